"""Payload indexes through qdrant-client against its local mode (Qdrant's behaviour, in process):
``create_payload_index`` / ``delete_payload_index``, ``payload_schema`` with point counts, filtered
search, scroll, count, delete-by-filter, datetime ranges, full-text and facets answering as
local mode does, indexes kept through every write, a restart and ``verify``; and the mistakes
Qdrant refuses, refused."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m

from consumers import integrity
from infra.settings import Settings
from tests.api.conftest import Running, serving, unique

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant:UserWarning")

DIM, N = 8, 600
COLORS = ("red", "green", "blue", "cyan")
TEXTS = ("the quick red fox", "a lazy blue dog", "red and blue", "quick quick slow")


def _payload(i: int) -> dict[str, Any]:
    return {"color": COLORS[i % 4] if i % 7 else [COLORS[i % 4], "cyan"], "n": i % 50, "price": (i % 13) * 1.5,
            "ok": i % 3 == 0, "text": TEXTS[i % 4], "at": f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            "meta": {"tag": f"t{i % 5}"}}


def _fill(client: QdrantClient, name: str, vectors: np.ndarray) -> None:
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
    client.upsert(name, [m.PointStruct(id=i, vector=vectors[i].tolist(), payload=_payload(i)) for i in range(N)],
                  wait=True)


FILTERS = [
    m.Filter(must=[m.FieldCondition(key="color", match=m.MatchValue(value="red"))]),
    m.Filter(must=[m.FieldCondition(key="color", match=m.MatchAny(any=["green", "cyan"]))],
             must_not=[m.FieldCondition(key="n", range=m.Range(gte=10, lt=30))]),
    m.Filter(should=[m.FieldCondition(key="ok", match=m.MatchValue(value=True)),
                     m.FieldCondition(key="meta.tag", match=m.MatchValue(value="t2"))]),
    m.Filter(must=[m.FieldCondition(key="price", range=m.Range(gt=3.0, lte=9.0)),
                   m.FieldCondition(key="text", match=m.MatchText(text="quick"))]),
    m.Filter(must=[m.FieldCondition(key="text", match=m.MatchText(text="red blue"))]),
    m.Filter(must=[m.FieldCondition(key="at", range=m.DatetimeRange(gte=datetime(2024, 1, 5, tzinfo=UTC),
                                                                   lt=date(2024, 1, 9)))]),
    m.Filter(must=[m.FieldCondition(key="color", match=m.MatchValue(value="blue")),
                   m.IsEmptyCondition(is_empty=m.PayloadField(key="missing"))]),
    m.Filter(must_not=[m.FieldCondition(key="color", match=m.MatchValue(value="red"))]),
]


def _ids(points: Any) -> list[Any]:
    return [p.id for p in points]


def _same_answers(ours: QdrantClient, theirs: QdrantClient, name: str, query: np.ndarray) -> None:
    for flt in FILTERS:
        want = _ids(theirs.query_points(name, query=query.tolist(), query_filter=flt, limit=15).points)
        got = _ids(ours.query_points(name, query=query.tolist(), query_filter=flt, limit=15).points)
        assert got == want, flt
        assert ours.count(name, count_filter=flt).count == theirs.count(name, count_filter=flt).count, flt
        assert _ids(ours.scroll(name, scroll_filter=flt, limit=40)[0]) == \
            _ids(theirs.scroll(name, scroll_filter=flt, limit=40)[0]), flt
    orders = [m.OrderBy(key="n"), m.OrderBy(key="n", direction=m.Direction.DESC, start_from=30),
              m.OrderBy(key="at", start_from=datetime(2024, 1, 20, tzinfo=UTC))]
    for order in orders:
        for within in (None, FILTERS[1]):
            want = theirs.scroll(name, scroll_filter=within, order_by=order, limit=10 * N)[0]
            got = ours.scroll(name, scroll_filter=within, order_by=order, limit=10 * N)[0]
            # ties in value come in insertion order in local mode, in label order here (Qdrant: segment order)
            assert [r.order_value for r in got] == [r.order_value for r in want], order
            assert sorted((r.order_value, r.id) for r in got) == sorted((r.order_value, r.id) for r in want), order
            assert got[0].payload == ours.retrieve(name, [got[0].id])[0].payload
            short = ours.scroll(name, scroll_filter=within, order_by=order, limit=7)
            assert [r.order_value for r in short[0]] == [r.order_value for r in want[:7]] and short[1] is None
    facets: list[tuple[str, m.Filter | None]] = [("color", None), ("meta.tag", FILTERS[2]), ("n", FILTERS[0]),
                                                 ("ok", None)]
    for key, within in facets:
        want = theirs.facet(name, key, facet_filter=within, limit=7).hits
        assert ours.facet(name, key, facet_filter=within, limit=7).hits == want, key


def test_indexes_answer_as_qdrant_through_writes_restart_and_verify(kafka_bootstrap: str, tmp_path: Path,
                                                                   catalog_url: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('pidx')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0, catalog_url=catalog_url)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    query = rng.normal(size=DIM).astype(np.float32)
    name = unique("pidx")
    local = QdrantClient(":memory:")
    _fill(local, name, vectors)
    indexes: dict[str, Any] = {"color": m.PayloadSchemaType.KEYWORD, "n": m.PayloadSchemaType.INTEGER,
                               "price": m.PayloadSchemaType.FLOAT, "ok": m.PayloadSchemaType.BOOL,
                               "text": m.TextIndexParams(type=m.TextIndexType.TEXT, tokenizer=m.TokenizerType.WORD,
                                                         lowercase=True),
                               "at": m.PayloadSchemaType.DATETIME,
                               "meta.tag": m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)}
    for field, schema in indexes.items():
        local.create_payload_index(name, field, schema)
    with serving(settings) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        _fill(client, name, vectors)
        for field, schema in indexes.items():
            result = client.create_payload_index(name, field, schema, wait=True)
            assert result.status == m.UpdateStatus.COMPLETED
        info = client.get_collection(name).payload_schema
        assert set(info) == set(indexes)
        assert info["color"].data_type == m.PayloadSchemaType.KEYWORD and info["color"].points == N
        assert info["meta.tag"].params == indexes["meta.tag"] and info["n"].params is None
        assert info["text"].data_type == m.PayloadSchemaType.TEXT
        _same_answers(client, local, name, query)

        # every write keeps the indexes: payload edits, overwrite, delete keys, clear, deletes, delete by filter
        for c in (client, local):
            c.set_payload(name, {"color": "red", "n": 7}, points=list(range(0, 60)), wait=True)
            c.overwrite_payload(name, {"color": "blue", "text": "red fox"}, points=[100, 101, 102], wait=True)
            c.delete_payload(name, ["color", "meta.tag"], points=list(range(200, 230)), wait=True)
            c.clear_payload(name, points_selector=[300, 301], wait=True)
            c.delete(name, points_selector=m.FilterSelector(filter=m.Filter(must=[
                m.FieldCondition(key="n", range=m.Range(gte=40))])), wait=True)
            c.upsert(name, [m.PointStruct(id=N + i, vector=vectors[i].tolist(), payload=_payload(i + 3))
                            for i in range(40)], wait=True)
        held = [p.payload for p in local.scroll(name, limit=10 * N)[0]]  # local mode reports no payload_schema
        with_color = sum(1 for payload in held if payload and payload.get("color") not in (None, []))
        assert client.get_collection(name).payload_schema["color"].points == with_color
        _same_answers(client, local, name, query)

        client.delete_payload_index(name, "price", wait=True)
        local.delete_payload_index(name, "price")
        assert "price" not in client.get_collection(name).payload_schema
        _same_answers(client, local, name, query)
        assert server.replica.projector.request_snapshot(60) is not None

    with serving(settings) as server:  # from the snapshot: the indexes are rebuilt from its payloads
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        assert set(client.get_collection(name).payload_schema) == set(indexes) - {"price"}
        _same_answers(client, local, name, query)
        coll = server.replica.projector.state.get(name)
        assert coll is not None and coll.index.rows_kept
    report = integrity.verify(settings)
    assert report.ok, report.problems


def test_index_mistakes_are_refused_as_qdrant_refuses_them(server: Running) -> None:
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=30, check_compatibility=False)
    name = unique("pidxbad")
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT))
    http = httpx.Client(base_url=server.url, timeout=30)
    cases = [
        ({"field_name": "x"}, 400, "Can't auto-detect field type"),
        ({"field_name": "x", "field_schema": "vector"}, 400, "field_schema: unknown payload schema type 'vector'"),
        ({"field_name": "x", "field_schema": {"type": "keyword", "bogus": 1}}, 400,
         "field_schema: unknown parameter 'bogus'"),
        ({"field_name": "x", "field_schema": {"type": "text", "tokenizer": "prefix"}}, 400,
         "field_schema.tokenizer: 'prefix' is not supported"),
        ({"field_name": "a..b", "field_schema": "keyword"}, 400, "field_name"),
        ({"field_schema": "keyword"}, 400, "field_name: required"),
    ]
    for body, status, message in cases:
        answer = http.put(f"/collections/{name}/index", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert message in answer.json()["status"]["error"], (body, answer.text)
    missing = http.put(f"/collections/{unique('nope')}/index", json={"field_name": "x", "field_schema": "keyword"})
    assert missing.status_code == 404
    unindexed = http.post(f"/collections/{name}/facet", json={"key": "x"})
    assert unindexed.status_code == 400 and "No appropriate index for faceting: `x`" in unindexed.text
    answer = http.put(f"/collections/{name}/index?wait=true", json={"field_name": "x", "field_schema": "geo"})
    assert answer.status_code == 200 and answer.json()["result"]["status"] == "completed"
    assert "write_token" in answer.json()["result"]
    not_facetable = http.post(f"/collections/{name}/facet", json={"key": "x"})
    assert not_facetable.status_code == 400
    unordered = http.post(f"/collections/{name}/points/scroll", json={"order_by": "x"})
    assert unordered.status_code == 400 and "No range index for `order_by` key: `x`" in unordered.text
    with_offset = http.post(f"/collections/{name}/points/scroll", json={"order_by": "x", "offset": 3})
    assert with_offset.status_code == 400 and "Cannot use an `offset` when using `order_by`" in with_offset.text
    assert http.delete(f"/collections/{name}/index/x?wait=true").status_code == 200
    assert client.get_collection(name).payload_schema == {}
