"""What a caller may do: Qdrant's RBAC (``lib/storage/src/rbac``), for the API keys and for JWTs.

An :class:`Access` is either global (``"r"``: read everything, ``"m"``: manage everything) or a
list of collections, each ``"r"`` (read), ``"rw"`` (read and write, payload indexes and
snapshots included) or ``"prw"`` (read and write points only). The full API key is global
``"m"``, the read-only key global ``"r"``; a JWT (``Settings.jwt_rbac``) carries its own in its
``access`` claim (:func:`from_claims`).

Each request needs something (:class:`Need`): global access, or access to the collection its
path names, to read or to write, with or without the collection's "extras" (payload indexes,
snapshots, its shard layout). :func:`rest_need` says what each REST route needs, for
:class:`vectorizer.api.auth.AuthMiddleware` to check before the request goes on; the gRPC
services check the same way (``vectorizer.grpc_api.services``). Operations on the set of
collections (create, update, delete a collection, change aliases, recover from a snapshot)
need global manage access, as in Qdrant. Routes that list collections or aliases answer with
the ones the caller may read (:meth:`Access.readable`).

A refusal is a 403 with Qdrant's message (``Forbidden: Access to collection x is required``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from vectorizer.api.errors import Forbidden, Unauthorized
from vectorizer.api.paths import collection_path

GlobalMode = Literal["r", "m"]
CollectionMode = Literal["r", "rw", "prw"]
_COLLECTION_MODES: tuple[CollectionMode, ...] = ("r", "rw", "prw")


@dataclass(frozen=True)
class Need:
    """What a request needs. ``collection`` None: global access (``any_caller``: just a valid credential)."""

    collection: str | None = None
    write: bool = False
    manage: bool = False  # global manage: the set of collections itself
    extras: bool = False  # payload indexes, snapshots, the collection's cluster layout
    any_caller: bool = False


ANY = Need(any_caller=True)
GLOBAL_READ = Need()
MANAGE = Need(manage=True)


def read(collection: str, *, extras: bool = False) -> Need:
    return Need(collection, extras=extras)


def write(collection: str, *, extras: bool = False) -> Need:
    return Need(collection, write=True, extras=extras)


@dataclass(frozen=True)
class Access:
    """Global access (``mode``) or per-collection access (``collections``); exactly one is set."""

    mode: GlobalMode | None = None
    collections: Mapping[str, CollectionMode] = field(default_factory=dict)
    #: Said after a refusal to write with global read access (the read-only key: "this API key allows reads only").
    note: str = field(default="", compare=False)

    def refusal(self, need: Need) -> Forbidden | None:
        """Why this access does not meet ``need`` (Qdrant's 403 message), or ``None`` when it does."""
        if need.any_caller:
            return None
        if self.mode is not None:
            if (need.write or need.manage) and self.mode != "m":
                return _forbidden("Global manage access is required" + (f" ({self.note})" if self.note else ""))
            return None
        if need.collection is None or need.manage:
            return _forbidden("Global access is required")
        mode = self.collections.get(need.collection)
        if mode is None:
            return _forbidden(f"Access to collection {need.collection} is required")
        if need.extras and mode == "prw":
            return _forbidden(f"Only points access is allowed for collection {need.collection}")
        if need.write and mode == "r":
            return _forbidden(f"Write access to collection {need.collection} is required")
        return None

    def check(self, need: Need) -> None:
        error = self.refusal(need)
        if error is not None:
            raise error

    def readable(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` this access may read (all of them with global access)."""
        return list(names) if self.mode is not None else [n for n in names if n in self.collections]

    def reads(self, name: str) -> bool:
        return self.mode is not None or name in self.collections

    @property
    def is_global(self) -> bool:
        return self.mode is not None


FULL = Access(mode="m")
READ_ONLY = Access(mode="r", note="this API key allows reads only")

#: The access of the request or gRPC call being served (set where its credential is checked).
ACCESS: ContextVar[Access] = ContextVar("vectorizer_access", default=FULL)


def _forbidden(message: str) -> Forbidden:
    return Forbidden(f"Forbidden: {message}")


def from_claims(claims: Mapping[str, Any]) -> Access:
    """The ``access`` claim of a JWT (absent: full access, as Qdrant); a malformed one is a 401."""
    raw = claims.get("access", "m")
    if raw in ("r", "m"):
        return Access(mode=raw)
    if not isinstance(raw, list):
        raise Unauthorized(f"Invalid JWT: access: expected \"r\", \"m\" or a list of collections, got {raw!r}")
    granted: dict[str, CollectionMode] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"collection", "access"}:
            raise Unauthorized(f"Invalid JWT: access[{i}]: expected {{\"collection\": ..., \"access\": ...}}")
        name, mode = item.get("collection"), item.get("access")
        if not isinstance(name, str) or not name:
            raise Unauthorized(f"Invalid JWT: access[{i}].collection: expected a collection name")
        if mode not in _COLLECTION_MODES:
            raise Unauthorized(f"Invalid JWT: access[{i}].access: expected one of r, rw, prw, got {mode!r}")
        if name in granted:
            raise Unauthorized(f"Invalid JWT: access: Collection name should be unique ({name})")
        granted[name] = mode
    return Access(collections=granted)


#: Routes any valid credential may call: the probes, the API's description, the lists (answered
#: with what the caller may read), and MCP (whose tools call the REST routes with the caller's key).
_ANY_CALLER = frozenset({"/", "/health", "/healthz", "/livez", "/ready", "/readyz", "/openapi.json", "/collections",
                         "/aliases", "/vectorizer/collections", "/mcp"})


def rest_need(method: str, path: str, reads: bool) -> Need:
    """What a REST request needs; ``reads``: whether the route only reads (``vectorizer.api.auth.is_read``)."""
    trimmed = path.rstrip("/") or "/"
    found = collection_path(trimmed) if trimmed != "/collections/aliases" else None
    if found is None:
        if trimmed in _ANY_CALLER and reads:
            return ANY
        return GLOBAL_READ if reads else MANAGE
    name, rest = found
    if rest == "":
        return read(name) if reads else MANAGE  # create, change, delete: the set of collections
    if rest in ("/snapshots/recover", "/snapshots/upload"):
        return MANAGE  # replaces the collection, as Qdrant's recovery
    if rest.startswith(("/snapshots", "/index", "/cluster")):
        return Need(name, write=not reads, extras=True)
    return read(name) if reads else write(name)
