"""Qdrant's gRPC API beyond what qdrant-client's compatibility tests cover (tests/api/test_qdrant_compat.py
runs those over gRPC too): errors as gRPC statuses with the REST answers' messages, write tokens in
metadata and in a field Qdrant's messages lack, read-your-writes, rejections by the projection,
API keys, the read-only rule of workspace collections, the older search calls, bulk uploads,
and the generated code matching Qdrant's ``.proto`` files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import unknown_fields
from qdrant_client import QdrantClient
from qdrant_client import models as m

from producers.producer import VectorProducer
from tests.api.conftest import Running, end_offset, held_projector, unique
from tests.api.test_qdrant_compat import assert_same_hits
from tests.helpers import wait_until
from vectorizer.grpc_api import convert, generate
from vectorizer.grpc_api.qdrant import collections_pb2 as cpb
from vectorizer.grpc_api.qdrant import collections_service_pb2_grpc as cgrpc
from vectorizer.grpc_api.qdrant import points_pb2 as ppb
from vectorizer.grpc_api.qdrant import points_service_pb2_grpc as pgrpc
from vectorizer.grpc_api.qdrant import qdrant_common_pb2 as common
from vectorizer.grpc_api.services import CONSISTENCY_HEADER, WRITE_TOKEN_FIELD, WRITE_TOKEN_HEADER

ROOT = Path(__file__).resolve().parents[2]
KEY, READ_ONLY_KEY = "grpc-full-key", "grpc-read-key"


class Stubs:
    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.points = pgrpc.PointsStub(self.channel)
        self.collections = cgrpc.CollectionsStub(self.channel)


@pytest.fixture(scope="module")
def stubs(server: Running) -> Iterator[Stubs]:
    made = Stubs(server.grpc_port)
    yield made
    made.channel.close()


def _client(server: Running, **kwargs: Any) -> QdrantClient:
    return QdrantClient(host="127.0.0.1", port=server.settings.http_port, grpc_port=server.grpc_port, prefer_grpc=True,
                        timeout=60, check_compatibility=False, **kwargs)


def _status(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _dense(values: list[float]) -> ppb.Vectors:
    return ppb.Vectors(vector=ppb.Vector(dense=ppb.DenseVector(data=values)))


def _point(pid: int, values: list[float], **payload: Any) -> ppb.PointStruct:
    ps = ppb.PointStruct(id=common.PointId(num=pid), vectors=_dense(values))
    convert.fill_payload(ps.payload, payload)
    return ps


def test_errors_are_grpc_statuses_with_the_rest_messages(server: Running, stubs: Stubs) -> None:
    name = unique("grpcerr")
    missing = unique("grpcmissing")
    server.http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}}).raise_for_status()
    cases: list[tuple[Callable[[], Any], grpc.StatusCode, Callable[[], Any]]] = [
        (lambda: stubs.collections.Get(cpb.GetCollectionInfoRequest(collection_name=missing)),
         grpc.StatusCode.NOT_FOUND, lambda: server.http.get(f"/collections/{missing}")),
        (lambda: stubs.collections.Create(cpb.CreateCollection(collection_name=name, vectors_config=cpb.VectorsConfig(
            params=cpb.VectorParams(size=2, distance=cpb.Dot)))),
         grpc.StatusCode.ALREADY_EXISTS,
         lambda: server.http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}})),
        (lambda: stubs.points.Upsert(ppb.UpsertPoints(collection_name=name, points=[_point(1, [1.0, 2.0, 3.0])])),
         grpc.StatusCode.INVALID_ARGUMENT,
         lambda: server.http.put(f"/collections/{name}/points", json={"points": [{"id": 1, "vector": [1, 2, 3]}]})),
        (lambda: stubs.points.Query(ppb.QueryPoints(collection_name=name, query=ppb.Query(nearest=ppb.VectorInput(
            dense=ppb.DenseVector(data=[1.0, 2.0, 3.0]))))),
         grpc.StatusCode.INVALID_ARGUMENT,
         lambda: server.http.post(f"/collections/{name}/points/query", json={"query": {"nearest": [1, 2, 3]}})),
        (lambda: stubs.points.Search(ppb.SearchPoints(collection_name=name, vector=[1.0, float("nan")], limit=1)),
         grpc.StatusCode.INVALID_ARGUMENT,
         lambda: server.http.post(f"/collections/{name}/points/search", content=b'{"vector": [1.0, NaN], "limit": 1}',
                                  headers={"content-type": "application/json"})),
        (lambda: stubs.points.Query(ppb.QueryPoints(collection_name=missing)),
         grpc.StatusCode.NOT_FOUND, lambda: server.http.post(f"/collections/{missing}/points/query", json={})),
        (lambda: stubs.points.Count(ppb.CountPoints(collection_name=name, filter=common.Filter(must=[common.Condition(
            field=common.FieldCondition(key="a[", match=common.Match(keyword="x")))]))),
         grpc.StatusCode.INVALID_ARGUMENT,
         lambda: server.http.post(f"/collections/{name}/points/count",
                                  json={"filter": {"must": [{"key": "a[", "match": {"value": "x"}}]}})),
        (lambda: stubs.collections.Create(cpb.CreateCollection(collection_name="a*b")),
         grpc.StatusCode.INVALID_ARGUMENT, lambda: server.http.put("/collections/a*b", json={})),
    ]
    for call, code, rest in cases:
        error = _status(call)
        answer = rest()
        assert error.code() == code, (error.code(), error.details())
        assert answer.status_code >= 400 and error.details() == answer.json()["status"]["error"], error.details()


def _token_field(message: Any) -> str:
    (field,) = [f for f in unknown_fields.UnknownFieldSet(message) if f.field_number == WRITE_TOKEN_FIELD]
    return bytes(field.data).decode()


def test_write_tokens_and_read_your_writes(server: Running, stubs: Stubs) -> None:
    name = unique("grpctok")
    created, call = stubs.collections.Create.with_call(cpb.CreateCollection(
        collection_name=name, vectors_config=cpb.VectorsConfig(params=cpb.VectorParams(size=2, distance=cpb.Dot))))
    assert created.result is True and _token_field(created) == dict(call.initial_metadata())[WRITE_TOKEN_HEADER]
    with held_projector(server) as gate:
        answer, call = stubs.points.Upsert.with_call(ppb.UpsertPoints(collection_name=name, wait=False,
                                                                      points=[_point(7, [1.0, 0.0], tag="a")]))
        token = dict(call.initial_metadata())[WRITE_TOKEN_HEADER]
        assert answer.result.status == ppb.Acknowledged and _token_field(answer) == token
        assert answer.result.operation_id == int(token.split(":")[1].split("@")[0])
        waiting = ((CONSISTENCY_HEADER, token),)
        timed_out = _status(lambda: stubs.points.Count(ppb.CountPoints(collection_name=name, timeout=1),
                                                       metadata=waiting))
        assert timed_out.code() == grpc.StatusCode.DEADLINE_EXCEEDED, timed_out.details()
        gate.set()
        counted = stubs.points.Count(ppb.CountPoints(collection_name=name, exact=True), metadata=waiting)
    assert counted.result.count == 1
    got = stubs.points.Get(ppb.GetPoints(collection_name=name, ids=[common.PointId(num=7)],
                                         with_payload=ppb.WithPayloadSelector(enable=True)), metadata=waiting)
    assert [p.id.num for p in got.result] == [7] and got.result[0].payload["tag"].string_value == "a"
    bad = _status(lambda: stubs.points.Count(ppb.CountPoints(collection_name=name),
                                             metadata=((CONSISTENCY_HEADER, "0:x"),)))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "write token" in bad.details()


def test_a_write_the_projection_rejects_is_an_error_naming_its_record(server: Running, stubs: Stubs) -> None:
    doomed = unique("grpcdoomed")
    with VectorProducer(server.settings) as producer:
        producer.wait_applied(producer.create_collection(doomed, 2, "ip"), timeout=60)
    before = end_offset(server.settings)
    out: dict[str, Any] = {}
    with held_projector(server) as gate:
        with VectorProducer(server.settings) as rival:
            rival.delete_collection(doomed)  # on the log first, not applied yet: the upsert validates

        def upsert() -> None:
            try:
                stubs.points.Upsert(ppb.UpsertPoints(collection_name=doomed, wait=True, points=[_point(1, [1, 0])]))
            except grpc.RpcError as exc:
                out["error"] = exc

        thread = threading.Thread(target=upsert)
        thread.start()
        wait_until(lambda: end_offset(server.settings) >= before + 2, 60, message="both writes on the log")
        gate.set()
        thread.join(60)
    error = out["error"]
    trailing = dict(error.trailing_metadata())
    assert error.code() == grpc.StatusCode.NOT_FOUND, (error.code(), error.details())
    assert trailing["x-vectorizer-reason"] == "rejected" and trailing["x-vectorizer-rejected"].startswith("0:")


def test_search_calls_match_the_rest_answers(server: Running, stubs: Stubs) -> None:
    name = unique("grpcsearch")
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(40, 4)).astype(np.float32)
    client = _client(server)
    client.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.EUCLID))
    client.upsert(name, [m.PointStruct(id=i, vector=rows[i].tolist(), payload={"even": i % 2 == 0})
                         for i in range(40)])
    query = rng.normal(size=4).astype(np.float32).tolist()
    rest = server.http.post(f"/collections/{name}/points/search", json={
        "vector": query, "limit": 5, "filter": {"must": [{"key": "even", "match": {"value": True}}]},
        "with_payload": True, "params": {"exact": True}}).json()["result"]
    flt = common.Filter(must=[common.Condition(field=common.FieldCondition(key="even",
                                                                           match=common.Match(boolean=True)))])
    one = ppb.SearchPoints(collection_name=name, vector=query, limit=5, filter=flt,
                           with_payload=ppb.WithPayloadSelector(enable=True), params=ppb.SearchParams(exact=True))
    hits = stubs.points.Search(one).result
    assert [h.id.num for h in hits] == [h["id"] for h in rest]
    assert np.allclose([h.score for h in hits], [h["score"] for h in rest], atol=1e-5)
    assert all(h.payload["even"].bool_value for h in hits)
    batch = stubs.points.SearchBatch(ppb.SearchBatchPoints(collection_name=name, search_points=[
        one, ppb.SearchPoints(collection_name=name, vector=query, limit=2)])).result
    assert [[h.id.num for h in b.result] for b in batch] == [[h.id.num for h in hits], [h.id.num for h in
                                                                                        stubs.points.Search(
                                                                                            ppb.SearchPoints(
                                                                                                collection_name=name,
                                                                                                vector=query,
                                                                                                limit=2)).result]]
    client.close()


def test_bulk_uploads_over_grpc(server: Running) -> None:
    client = _client(server)
    rows = np.random.default_rng(5).normal(size=(3_000, 8)).astype(np.float32)
    for how in ("upload_points", "upload_collection"):
        name = unique(f"grpc{how}")
        client.create_collection(name, vectors_config=m.VectorParams(size=8, distance=m.Distance.COSINE))
        if how == "upload_points":
            client.upload_points(name, [m.PointStruct(id=i, vector=rows[i].tolist()) for i in range(len(rows))],
                                 batch_size=500, parallel=2, wait=True)
        else:
            client.upload_collection(name, vectors=rows, ids=range(len(rows)), batch_size=500, parallel=2, wait=True)
        def loaded(name: str = name) -> bool:
            return client.count(name, exact=True).count == len(rows)

        wait_until(loaded, 60, message=how)
        top = client.query_points(name, query=rows[1234].tolist(), limit=1).points
        assert top[0].id == 1234, how
    client.close()


def test_keys_and_workspace_collections(make_server: Callable[..., Running]) -> None:
    server = make_server(api_key=KEY, read_only_api_key=READ_ONLY_KEY, workspace_file=ROOT / "vectorize-workspace.yml")
    with pytest.warns(UserWarning, match="insecure"):  # qdrant-client's own warning: a key over plain text
        full, reader = _client(server, api_key=KEY, https=False), _client(server, api_key=READ_ONLY_KEY, https=False)
    nobody = _client(server)
    name = unique("grpckeys")
    full.create_collection(name, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    full.upsert(name, [m.PointStruct(id=1, vector=[1.0, 0.0])])
    assert reader.count(name, exact=True).count == 1 and name in {c.name for c in reader.get_collections().collections}
    refused = _status(lambda: reader.upsert(name, [m.PointStruct(id=2, vector=[0.0, 1.0])]))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED and "reads only" in refused.details()
    for call in (lambda: nobody.get_collections(), lambda: nobody.count(name)):
        error = _status(call)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "API key" in error.details()
    with pytest.warns(UserWarning, match="insecure"):
        wrong = _status(lambda: _client(server, api_key="wrong", https=False).collection_exists(name))
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    synced = server.http.post("/vectorizer/workspace/sync", headers={"api-key": KEY})
    assert synced.status_code == 200, synced.text
    workspace = synced.json()["result"]["collections"][0]["name"]
    for write in (lambda: full.upsert(workspace, [m.PointStruct(id=1, vector=[1.0, 0.0])]),
                  lambda: full.delete_collection(workspace),
                  lambda: full.set_payload(workspace, {"a": 1}, points=[1])):
        error = _status(write)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "read-only" in error.details(), error.details()
    assert full.count(workspace, exact=True).count > 0
    for client in (full, reader, nobody):
        client.close()


def test_generated_code_is_what_the_protos_give(tmp_path: Path) -> None:
    """The checked-in modules are protoc's output for Qdrant's .proto files (regenerate:
    ``python -m vectorizer.grpc_api.generate``)."""
    written = generate.generate(tmp_path)
    assert len(written) == 2 * len(list(generate.PROTO.glob("*.proto")))
    for path in [*written, tmp_path / "__init__.py"]:
        assert path.read_text() == (generate.OUT / path.name).read_text(), path.name
    assert sorted(p.name for p in generate.OUT.glob("*.py")) == sorted(p.name for p in tmp_path.glob("*.py"))


@pytest.mark.filterwarnings("ignore:Local mode performs exact")
def test_named_and_sparse_vectors_over_grpc_as_in_local_mode(server: Running) -> None:
    """Named dense and sparse vectors through qdrant-client's gRPC conversions, against its local mode."""
    client, local = _client(server), QdrantClient(":memory:")
    name = unique("grpcnamed")
    rng = np.random.default_rng(11)
    for c in (client, local):
        c.create_collection(name, vectors_config={"a": m.VectorParams(size=3, distance=m.Distance.DOT)},
                            sparse_vectors_config={"s": m.SparseVectorParams()})
        c.upsert(name, [m.PointStruct(id=i, vector={"a": rng.normal(size=3).tolist(), "s": m.SparseVector(
            indices=[i % 5, 5 + i % 3], values=[1.0 + i / 7, 0.5 + i / 10])}, payload={"i": i}) for i in range(12)])
        rng = np.random.default_rng(11)  # the same points for both
    dense_q, sparse_q = [0.3, -1.0, 0.5], m.SparseVector(indices=[1, 6], values=[1.0, 2.0])
    for using, q in (("a", dense_q), ("s", sparse_q)):
        ours = client.query_points(name, query=q, using=using, limit=5, with_vectors=True,
                                   search_params=m.SearchParams(exact=True)).points
        theirs = local.query_points(name, query=q, using=using, limit=5, with_vectors=True).points
        assert_same_hits(ours, theirs, grpc=True)  # ties may swap
        by_id: dict[Any, Any] = {p.id: p.vector for p in theirs}
        for a in ours:
            got: Any = a.vector
            if a.id in by_id:
                assert np.allclose(got["a"], by_id[a.id]["a"], atol=1e-6)
                assert got["s"].indices == by_id[a.id]["s"].indices
    client.close()
    local.close()
