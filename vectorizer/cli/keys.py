"""``vectorizer keys generate|list|rotate`` and ``vectorizer shred``: the data keys of encryption at rest.

The data keys live wrapped on ``<topic>.keys`` (``infra.keyring``); every command here needs the
key-encryption key but ``generate`` (which makes one) and ``list`` (which shows no secret).
"""

from __future__ import annotations

from typing import Optional

import typer

from infra import kek
from infra.errors import EncryptionKeyError, VectorizerError
from infra.keyring import DataKey, Keyring
from infra.settings import Settings
from vectorizer.cli.context import CliContext, cli_context, fail, has_catalog, open_catalog

app = typer.Typer(help="Encryption at rest: the key-encryption key and the collections' data keys.",
                  no_args_is_help=True)


def open_keyring(settings: Settings) -> Keyring:
    """The keyring of the configured topic; refuses (exit 1) without a key-encryption key."""
    if not settings.has_kek:
        raise fail("this needs the key-encryption key: set VECTORIZER_ENCRYPTION_KEY_FILE or "
                   "VECTORIZER_ENCRYPTION_KEY (`vectorizer keys generate` makes one)")
    ring = Keyring.open(settings)
    assert ring is not None  # a KEK is configured
    return ring


@app.command("generate")
def generate(ctx: typer.Context) -> None:
    """Print a new random key-encryption key (64 hex digits) for VECTORIZER_ENCRYPTION_KEY_FILE.

    Keep it where the data is not (a secrets manager, another volume): whoever holds the KEK and
    reads the topic reads the data; whoever loses it loses the data."""
    c = cli_context(ctx)
    key = kek.generate()
    c.emit({"key": key}, key)


@app.command("list")
def list_keys(ctx: typer.Context, collection: Optional[str] = typer.Argument(None)) -> None:
    """The data keys on <topic>.keys: collection, version, key id, state (active or shredded)."""
    c = cli_context(ctx)
    ring = Keyring(c.settings, kek.from_settings(c.settings))  # no secret is shown: the KEK is optional
    try:
        ring.refresh()
        rows = [k.row() for k in ring.data_keys(collection)]
    finally:
        ring.close()
    c.emit(rows, "\n".join(f"{r['collection']:30} v{r['version']:<4} {r['key_id']}  {r['state']}"
                           for r in rows) or f"no data keys on {c.settings.keys_topic}")


@app.command("rotate")
def rotate(ctx: typer.Context, collection: Optional[str] = typer.Argument(
        None, help="The collection (default: every collection with an active data key)")) -> None:
    """Add a new data key version: new events are sealed with it, older events stay readable with theirs.

    The log is not rewritten. A running server picks the new key up within a few seconds."""
    c = cli_context(ctx)
    ring = open_keyring(c.settings)
    try:
        names = [collection] if collection is not None else sorted(
            {k.collection for k in ring.data_keys() if k.shredded_at is None})
        added = [ring.add(name) for name in names]
    finally:
        ring.close()
    c.emit([k.row() for k in added], "\n".join(f"{k.collection}: data key v{k.version} ({k.key_id.hex()})"
                                               for k in added) or "no collection has a data key")


def shred(ctx: typer.Context, collection: str) -> None:
    """Destroy a deleted collection's data keys: its events on the topic become unreadable everywhere.

    The way to honour an erasure request on an immutable log: replay and verify skip the events
    as deleted. Refused while the collection exists in this projection's catalog (delete it
    first, or use `vectorizer collections delete --shred`). Irreversible."""
    c = cli_context(ctx)
    if has_catalog(c.settings):
        catalog = open_catalog(c.settings)
        try:
            exists = any(r["name"] == collection for r in catalog.collection_rows())
        finally:
            catalog.close()
        if exists:
            raise fail(f"collection {collection!r} exists: delete it first "
                       f"(`vectorizer collections delete {collection} --shred` does both)")
    shred_keys(c, collection)


def shred_keys(c: CliContext, collection: str) -> list[DataKey]:
    """Shred ``collection``'s data keys and report it (exit 1 if it has none that are active)."""
    ring = open_keyring(c.settings)
    try:
        if not ring.data_keys(collection):
            raise fail(f"collection {collection!r} has no data key on {c.settings.keys_topic}: its events "
                       "were written in clear and cannot be shredded (only encrypted events can)")
        done = ring.shred(collection)
    except EncryptionKeyError as exc:
        raise fail(str(exc)) from None
    except VectorizerError:
        raise
    finally:
        ring.close()
    c.emit({"collection": collection, "shredded": [k.row() for k in done]},
           f"shredded {len(done)} data keys of {collection}: its events are unreadable now" if done else
           f"the data keys of {collection} were already shredded")
    return done
