"""Collection aliases (Qdrant's): change them, list them, list a collection's.

``POST /collections/aliases`` is synchronous, as in Qdrant: the answer (``true``) comes once
this server applied the change, so the next request sees it. Its actions apply in order, all or
none (one ``AliasesChanged`` event); they are checked against the current state before
publishing, and the projection checks them again when it applies them (a concurrent change can
make them invalid meanwhile: the answer is then the projection's verdict, with the same status).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from projections.state import changed_aliases
from schemas import events as ev
from vectorizer.api import parsing as p
from vectorizer.api.access import ACCESS
from vectorizer.api.context import Api, api, body, json_body, ok, timeout_param
from vectorizer.api.errors import BadRequest

router = APIRouter(tags=["aliases"])
Timeout = timeout_param("Seconds to wait for this server to apply the change")
_ACTIONS = {"create_alias": ("create", ("collection_name", "alias_name")),
            "delete_alias": ("delete", ("alias_name",)),
            "rename_alias": ("rename", ("old_alias_name", "new_alias_name"))}


@router.post("/collections/aliases", summary="Create, delete and rename aliases, all or none",
             openapi_extra=json_body("actions: [{create_alias: {collection_name, alias_name}} | {delete_alias: "
                                     "{alias_name}} | {rename_alias: {old_alias_name, new_alias_name}}]"))
def update_aliases(request: Request, timeout: float | None = Timeout, b: dict[str, Any] = Depends(body),
                   a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    actions = alias_actions(b)
    aliases = a.projection.aliases()
    changed_aliases(aliases, a.projection.collections(), actions)  # Rejected: answered with its status
    token = producer.change_aliases(actions, collection=_concerned(actions, aliases))
    a.await_tokens([token], a.timeout(timeout))
    a.check_verdict(token)
    return ok(request, True, write_token=str(a.tagged(token)))


@router.get("/aliases", summary="Every alias")
def list_aliases(request: Request, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    caller = ACCESS.get()  # as Qdrant: the aliases whose name and collection the caller may both read
    return ok(request, _described((alias, c) for alias, c in a.projection.aliases().items()
                                  if caller.reads(alias) and caller.reads(c)))


@router.get("/collections/{collection_name}/aliases", summary="The aliases of a collection")
def collection_aliases(request: Request, collection_name: str, a: Api = Depends(api)) -> JSONResponse:
    """As Qdrant: the aliases naming ``collection_name`` (none for a missing collection or an alias: no 404)."""
    a.require_ready()
    caller = ACCESS.get()
    return ok(request, _described((alias, c) for alias, c in a.projection.aliases().items()
                                  if c == collection_name and caller.reads(alias)))


def _concerned(actions: list[ev.AliasAction], aliases: dict[str, str]) -> str | None:
    """The first collection the actions concern: a create's, or the one a deleted or renamed alias names."""
    for action in actions:
        target = action.collection or aliases.get(action.alias)
        if target:
            return target
    return None


def _described(pairs: Any) -> dict[str, Any]:
    return {"aliases": [{"alias_name": alias, "collection_name": c} for alias, c in sorted(pairs)]}


def alias_actions(b: dict[str, Any]) -> list[ev.AliasAction]:
    """Qdrant's ``ChangeAliasesOperation``: ``{"actions": [...]}``, each action an object with one of
    ``create_alias``, ``delete_alias``, ``rename_alias``; names checked as collection names (400)."""
    p.fields(b, "", ("actions",))
    raw = p.array(b.get("actions"), "actions")
    if not raw:
        raise BadRequest("actions: at least one alias action is needed")
    out = []
    for i, item in enumerate(raw):
        where = f"actions[{i}]"
        action = p.obj(item, where)
        kinds = [k for k in action if k in _ACTIONS]
        if len(kinds) != 1:
            raise BadRequest(f"{where}: expected one of create_alias, delete_alias, rename_alias, got "
                             f"{p.show(sorted(action))}")
        p.fields(action, where, kinds)
        kind, names = _ACTIONS[kinds[0]]
        params = p.obj(action[kinds[0]], f"{where}.{kinds[0]}")
        p.fields(params, f"{where}.{kinds[0]}", names)
        values = [p.string(params.get(n), f"{where}.{kinds[0]}.{n}") for n in names]
        if kind == "create":
            out.append(ev.AliasAction("create", values[1], collection=values[0]))
        elif kind == "delete":
            out.append(ev.AliasAction("delete", values[0]))
        else:
            out.append(ev.AliasAction("rename", values[0], new_alias=values[1]))
    return out
