"""``vectorizer dlq list|show``: the dead letters of the events topic, read back from ``<topic>.dlq``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import typer

from consumers.dlq import read_letters
from infra.errors import EncryptionKeyError
from infra.keyring import Keyring
from schemas import events as ev
from schemas import sealing
from schemas.codec import decode
from schemas.errors import DecodeError
from vectorizer.cli.context import cli_context, fail

app = typer.Typer(help="Dead letters: records the projection refused, and why.", no_args_is_help=True)


@app.command("list")
def list_letters(ctx: typer.Context) -> None:
    """One line per dead letter: offset, collection, reason, producer, time, detail."""
    c = cli_context(ctx)
    rows = [letter.row() for letter in read_letters(c.settings)]
    if c.json_output:
        c.emit(rows)
        return
    if not rows:
        typer.echo(f"no dead letters on {c.settings.dlq_topic}")
        return
    for r in rows:
        typer.echo(f"{r['offset']:>10}  {r['collection'] or '-'}  {r['reason']}  {r['producer'] or '-'}  "
                   f"{r['time'] or '-'}  {r['detail'][:120]}")


@app.command("show")
def show(ctx: typer.Context, offset: str = typer.Argument(..., help="The source offset, as PARTITION:OFFSET "
                                                                   "(or OFFSET for partition 0)")) -> None:
    """Everything about one dead letter, its original event decoded when it decodes.

    An encrypted record is decrypted when the key-encryption key is set
    (VECTORIZER_ENCRYPTION_KEY_FILE or VECTORIZER_ENCRYPTION_KEY); without it, it shows as encrypted."""
    c = cli_context(ctx)
    part, sep, off = offset.partition(":")
    if not sep:
        part, off = "0", part
    if not part.isdigit() or not off.isdigit():
        raise fail(f"offset {offset!r}: expected PARTITION:OFFSET, e.g. 0:17")
    for letter in read_letters(c.settings):
        if (letter.source_partition, letter.source_offset) == (int(part), int(off)):
            row = letter.row()
            try:
                keys = Keyring.open(c.settings) if c.settings.has_kek and letter.value is not None \
                    and sealing.is_sealed(letter.value) else None
            except EncryptionKeyError as exc:
                raise fail(str(exc)) from None
            try:
                row["event"] = _event(letter.value, keys)
            finally:
                if keys is not None:
                    keys.close()
            c.emit(row, json.dumps(row, indent=2, default=str))
            return
    raise fail(f"no dead letter for {c.settings.topic} at {part}:{off}")


def _event(value: bytes | None, keys: Keyring | None = None) -> Any:
    """The original event as JSON-able fields (vectors summarised), or why it does not decode
    (a sealed record is opened with ``keys``; ``encrypted`` says it was one)."""
    if value is None:
        return None
    encrypted = {"encrypted": True} if sealing.is_sealed(value) else {}
    try:
        event = decode(value, keys)
    except DecodeError as exc:
        return {"undecodable": str(exc), "bytes": len(value), **encrypted}
    fields: dict[str, Any] = {"type": type(event).__name__, **encrypted}
    for f in dataclasses.fields(event):
        item = getattr(event, f.name)
        if isinstance(item, np.ndarray):
            fields[f.name] = f"{item.shape[0]} x {item.shape[1]} float32"
        elif f.name in ("named", "sparse"):
            fields[f.name] = [f"{b.name}: {b.vectors.shape[0]} x {b.vectors.shape[1]} float32"
                              if isinstance(b, ev.NamedRows) else
                              f"{b.name}: {len(b.positions)} sparse vectors, {len(b.indices)} non-zeros" for b in item]
        elif f.name == "meta":
            fields[f.name] = {k.name: getattr(item, k.name) for k in dataclasses.fields(item)}
        else:
            fields[f.name] = list(item) if isinstance(item, tuple) else item
    return fields
