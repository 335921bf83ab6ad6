"""Producer-side commands: create and delete collections, upsert and delete points.

Every write is checked against the catalog first when the catalog has applied the whole log
(an existing collection for ``create``, a missing one for the others), then published, then
— unless ``--no-wait`` — waited on for the projection's verdict: exit 0 once applied, exit 1
with the reason if the projection rejected it, exit 3 if no projection applied it within
``--timeout`` (the write is durable in Kafka and will be applied when one runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from infra.kafka.clients import connection
from infra.kafka.launcher import broker_answers
from infra.settings import Settings
from producers import VectorProducer, WriteToken
from producers.errors import VerdictUnknown, WriteNotApplied, WriteRejected
from vectorizer.cli.context import CliContext, cli_context, fail, has_catalog, open_catalog
from vectorizer.cli.progress import progress

BATCH = 1000
PENDING_EXIT = 3  # acknowledged by Kafka, not applied by a projection within --timeout
collections_app = typer.Typer(help="Create, list, inspect and delete collections.", no_args_is_help=True)

Wait = typer.Option(True, "--wait/--no-wait", help="Wait for the projection's verdict (applied or rejected)")
Timeout = typer.Option(30.0, "--timeout", min=0.0, help="Seconds to wait for the verdict (with --wait)")


def make_producer(settings: Settings, writes_to: str | None = None, creates: str | None = None) -> VectorProducer:
    """A producer that knows the catalog's dimensions, after checking the write against the catalog.

    Refuses ``writes_to`` if it is a workspace collection, or (when the catalog has applied the
    whole log, so its answer is current) if it does not exist; refuses ``creates`` if it
    exists. Writing needs no catalog: without one (no server ran on this data directory)
    nothing is checked here and none is created; the verdict still tells.
    """
    from projections.catalog.store import dimension_lookup

    if not broker_answers(settings.kafka_bootstrap, timeout=3.0, connection=connection(settings)):
        raise fail(f"cannot reach Kafka at {settings.kafka_bootstrap}; is the broker running? "
                   "(`vectorizer kafka start`, or point --kafka-bootstrap / VECTORIZER_KAFKA_BOOTSTRAP at one)")
    name = writes_to or creates
    if name is not None and has_catalog(settings):
        catalog = open_catalog(settings)
        try:
            row = next((r for r in catalog.collection_rows() if r["name"] == name), None)
            if writes_to is not None and row is not None and row["kind"] == "workspace":
                raise fail(f"collection {name!r} is a workspace collection and is read-only: it follows its files "
                           "through `vectorizer workspace sync|watch` (`vectorizer workspace drop` deletes it)")
            if (row is None) == (writes_to is not None) and _caught_up(settings, catalog.positions()):
                raise fail(f"collection {name!r} does not exist" if row is None else
                           f"collection {name!r} already exists")
        finally:
            catalog.close()
    return VectorProducer(settings, dimensions=dimension_lookup(settings))


def _caught_up(settings: Settings, positions: dict[int, int]) -> bool:
    """Whether the catalog applied every committed record of the topic (so a check against it is current)."""
    import time

    from kafka import TopicPartition

    from consumers.replay import has_records, log_ends
    from infra.kafka import clients

    ends = log_ends(settings)
    consumer = clients.consumer(settings, "cli")
    try:
        tps = [TopicPartition(settings.topic, p) for p in ends]
        consumer.assign(tps)
        deadline = time.monotonic() + 5.0
        return not any(has_records(consumer, tp, positions.get(tp.partition, -1) + 1, ends[tp.partition], deadline)
                       for tp in tps)
    finally:
        consumer.close()


def settle(c: CliContext, producer: VectorProducer, tokens: list[WriteToken], wait: bool, timeout: float) -> str:
    """``applied`` / ``acknowledged`` for these writes; exits 1 (rejected) or 3 (not applied in time)."""
    if not wait or not tokens:
        return "acknowledged" if tokens else "applied"
    if not has_catalog(c.settings):
        raise fail(f"acknowledged (write token {tokens[-1]}), verdict unknown: no catalog in {c.settings.data_dir} to "
                   "read it from; give the server's --data-dir (or VECTORIZER_DATA_DIR), or --no-wait", PENDING_EXIT)
    try:
        producer.wait_applied(WriteToken.joined(tokens), timeout)
    except WriteRejected as exc:
        raise fail(f"rejected by the projection (status {exc.status}): {exc}") from None
    except WriteNotApplied as exc:
        raise fail(f"acknowledged, not applied yet: {exc}", PENDING_EXIT) from None
    except VerdictUnknown as exc:
        raise fail(f"acknowledged (write token {tokens[-1]}), verdict unknown: {exc}", PENDING_EXIT) from None
    return "applied"


@collections_app.command("create")
def create(ctx: typer.Context, name: str,
           dim: int = typer.Option(..., "--dim", help="Vector dimension"),
           metric: str = typer.Option("cosine", help="cosine | l2 | ip | manhattan"),
           m: int = typer.Option(16, "--m", help="HNSW links per node"),
           ef_construction: int = typer.Option(200, help="HNSW build-time candidate list"),
           ef: int = typer.Option(64, help="Default search-time candidate list"),
           wait: bool = Wait, timeout: float = Timeout) -> None:
    """Publish a collection-created event (and wait until it is applied)."""
    c = cli_context(ctx)
    with make_producer(c.settings, creates=name) as producer:
        token = producer.create_collection(name, dim, metric, m=m, ef_construction=ef_construction, ef=ef)
        status = settle(c, producer, [token], wait, timeout)
    c.emit({"collection": name, "write_token": str(token), "status": status},
           f"created {name} (write token {token})" if status == "applied" else
           f"create {name} acknowledged (write token {token}), not yet applied")


@collections_app.command("list")
def list_collections(ctx: typer.Context) -> None:
    """Collections in this projection's catalog, with their point counts."""
    c = cli_context(ctx)
    catalog = open_catalog(c.settings)
    rows = [{"name": r["name"], "dimension": r["dimension"], "metric": r["metric"], "kind": r["kind"],
             "points": catalog.point_count(r["name"])} for r in catalog.collection_rows()]
    c.emit(rows, "\n".join(f"{r['name']:30} dim={r['dimension']:<6} {r['metric']:7} {r['kind']:9} "
                           f"{r['points']} points" for r in rows) or "no collections")


@collections_app.command("info")
def info(ctx: typer.Context, name: str) -> None:
    """One collection's configuration and point count."""
    c = cli_context(ctx)
    catalog = open_catalog(c.settings)
    row = next((r for r in catalog.collection_rows() if r["name"] == name), None)
    if row is None:
        raise fail(f"collection {name!r} not found in the catalog at {catalog.safe_url}")
    row["points"] = catalog.point_count(name)
    c.emit(row, "\n".join(f"{k}: {v}" for k, v in row.items()))


@collections_app.command("delete")
def delete_collection(ctx: typer.Context, name: str, wait: bool = Wait, timeout: float = Timeout,
                      shred: bool = typer.Option(False, "--shred", help="Also destroy its data keys (encrypted "
                                                 "events only): its events become unreadable everywhere")) -> None:
    """Publish a collection-deleted event (and wait until it is applied); with --shred, then
    crypto-shred it (`vectorizer shred`)."""
    c = cli_context(ctx)
    if shred and not c.settings.has_kek:
        raise fail("--shred needs the key-encryption key: set VECTORIZER_ENCRYPTION_KEY_FILE or "
                   "VECTORIZER_ENCRYPTION_KEY")
    with make_producer(c.settings, writes_to=name) as producer:
        token = producer.delete_collection(name)
        status = settle(c, producer, [token], wait, timeout)
    c.emit({"collection": name, "write_token": str(token), "status": status},
           f"deleted {name} (write token {token})" if status == "applied" else
           f"delete {name} acknowledged (write token {token}), not yet applied")
    if shred:  # the deletion is durable on the log (in clear): it replays even once the keys are gone
        from vectorizer.cli.keys import shred_keys

        shred_keys(c, name)


def upsert(ctx: typer.Context, name: str, file: Path,
           ids: Optional[Path] = typer.Option(None, "--ids", help=".npy or .json list of ids (default 0..n-1)"),
           payloads: Optional[Path] = typer.Option(None, "--payloads", help="JSON lines, one payload per vector"),
           batch: int = typer.Option(BATCH, help="Vectors per event"),
           wait: bool = Wait, timeout: float = Timeout) -> None:
    """Upsert vectors from FILE: .npy (with --ids/--payloads) or .jsonl lines {"id","vector","payload"}."""
    c = cli_context(ctx)
    if not file.exists():
        raise fail(f"{file}: no such file")
    batches, total = _read_batches(file, ids, payloads, batch)
    tokens: list[WriteToken] = []
    with make_producer(c.settings, writes_to=name) as producer:
        with progress(f"upsert {name}", total) as advance:
            for b_ids, b_vectors, b_payloads in batches:
                tokens.append(producer.upsert(name, b_ids, b_vectors, b_payloads))
                advance(1, len(b_ids))
        status = settle(c, producer, tokens, wait, timeout)
    _report(c, name, total, tokens[-1] if tokens else None, status)


def _report(c: CliContext, name: str, total: int, token: object, status: str) -> None:
    done = "upserted" if status == "applied" else "acknowledged (not yet applied):"
    c.emit({"collection": name, "vectors": total, "write_token": str(token) if token else None, "status": status},
           f"{done} {total} vectors into {name} (write token {token})")


def _read_batches(file: Path, ids_file: Path | None, payload_file: Path | None,
                  batch: int) -> tuple[Iterator[tuple[list[Any], np.ndarray, list[Any] | None]], int]:
    if file.suffix == ".npy":
        vectors = np.load(file, mmap_mode="r")
        if vectors.ndim != 2:
            raise fail(f"{file}: expected a 2-d array, got shape {vectors.shape}")
        n = vectors.shape[0]
        id_list = _load_ids(ids_file, n) if ids_file else list(range(n))
        pl = _load_payloads(payload_file, n) if payload_file else None

        def gen() -> Iterator[tuple[list[Any], np.ndarray, list[Any] | None]]:
            for s in range(0, n, batch):
                yield id_list[s:s + batch], np.asarray(vectors[s:s + batch]), pl[s:s + batch] if pl else None
        return gen(), n
    if file.suffix in (".jsonl", ".ndjson"):
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or "vector" not in row:
                raise fail(f"{file}:{i + 1}: expected an object with 'id', 'vector' and optional 'payload'")

        def gen_jsonl() -> Iterator[tuple[list[Any], np.ndarray, list[Any] | None]]:
            for s in range(0, len(rows), batch):
                chunk = rows[s:s + batch]
                yield ([r.get("id", s + i) for i, r in enumerate(chunk)], np.asarray([r["vector"] for r in chunk]),
                       [r.get("payload") for r in chunk])
        return gen_jsonl(), len(rows)
    raise fail(f"{file}: expected a .npy or .jsonl file")


def _load_ids(path: Path, n: int) -> list[Any]:
    raw = np.load(path).tolist() if path.suffix == ".npy" else json.loads(path.read_text())
    if len(raw) != n:
        raise fail(f"{path}: {len(raw)} ids for {n} vectors")
    return list(raw)


def _load_payloads(path: Path, n: int) -> list[Any]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if len(rows) != n:
        raise fail(f"{path}: {len(rows)} payloads for {n} vectors")
    return rows


def delete(ctx: typer.Context, name: str, ids: list[str], wait: bool = Wait, timeout: float = Timeout) -> None:
    """Delete points by id (digits are integer ids, anything else a string/UUID id)."""
    c = cli_context(ctx)
    parsed: list[Any] = [int(i) if i.isdigit() else i for i in ids]
    with make_producer(c.settings, writes_to=name) as producer:
        token = producer.delete(name, parsed)
        status = settle(c, producer, [token], wait, timeout)
    c.emit({"collection": name, "deleted": len(parsed), "write_token": str(token), "status": status},
           f"deleted {len(parsed)} points from {name} (write token {token})" if status == "applied" else
           f"delete of {len(parsed)} points from {name} acknowledged (write token {token}), not yet applied")


def search(ctx: typer.Context, name: str,
           vector: Optional[str] = typer.Option(None, "--vector", help='The query as JSON, e.g. "[0.1, 0.2]"'),
           from_file: Optional[Path] = typer.Option(None, "--from", help=".npy (first row) or .json vector"),
           text: Optional[str] = typer.Option(None, "--text", help="A text query (collections with an embedder)"),
           k: int = typer.Option(10, "-k", help="How many neighbours"),
           mode: str = typer.Option("auto", "--mode", help="With --text: dense, sparse, hybrid (both, fused by RRF) "
                                                           "or auto (hybrid when the collection has a sparse "
                                                           "embedder)"),
           filter_json: Optional[str] = typer.Option(None, "--filter", help="A Qdrant filter as JSON")) -> None:
    """Nearest neighbours of a vector or a text, asked of the running server (VECTORIZER_HTTP)."""
    import httpx

    c = cli_context(ctx)
    if sum(x is not None for x in (vector, from_file, text)) != 1:
        raise fail("give exactly one of --vector, --from or --text")
    try:
        body: dict[str, Any] = {"limit": k, "with_payload": True}
        if text is not None:
            body["query"] = text
            body["mode"] = mode
        elif vector is not None:
            body["query"] = json.loads(vector)
        else:
            assert from_file is not None
            body["query"] = (np.load(from_file)[0] if from_file.suffix == ".npy" else np.asarray(json.loads(
                from_file.read_text()))).tolist()
        if filter_json:
            body["filter"] = json.loads(filter_json)
    except (ValueError, OSError, IndexError) as exc:
        raise fail(f"cannot read the query: {exc}") from None
    key = c.settings.api_key or c.settings.read_only_api_key
    headers = {"api-key": key} if key else {}
    route = "search/text" if text is not None else "points/query"
    try:
        answer = httpx.post(f"http://{c.settings.http}/collections/{name}/{route}", json=body,
                            headers=headers, timeout=c.settings.default_timeout)
    except httpx.HTTPError as exc:
        raise fail(f"no server answers at {c.settings.http} ({exc}); start one with `vectorizer serve`") from None
    if answer.status_code != 200:
        raise fail(f"{answer.status_code}: {answer.json().get('status', {}).get('error', answer.text)}")
    points = answer.json()["result"]["points"]
    if text is not None:
        c.emit(points, "\n\n".join(_text_hit(pt) for pt in points) or "no results")
        return
    c.emit(points, "\n".join(f"{pt['id']}\t{pt['score']:.6f}\t{json.dumps(pt.get('payload') or {})}"
                             for pt in points) or "no results")


def _text_hit(point: dict[str, Any]) -> str:
    payload = point.get("payload") or {}
    where = f"{payload.get('path', point['id'])}:{payload.get('start_line', '?')}-{payload.get('end_line', '?')}"
    snippet = " ".join(str(payload.get("text", "")).split())[:200]
    return f"{point['score']:.3f}  {where}\n       {snippet}"
