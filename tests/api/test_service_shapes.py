"""Qdrant's service shapes through a real server and broker: ``/`` and the Kubernetes probes,
collection info key by key against qdrant-client's local mode, Qdrant's 422 validation errors,
Qdrant's metric names, ``/cluster`` and ``/telemetry``, and the read-your-writes setting."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from consumers.projector import Projector
from infra.settings import Settings
from tests.api.conftest import Running, unique
from vectorizer import __version__
from vectorizer.api.app import create_app
from vectorizer.api.routes.service import QDRANT_API_VERSION

DENSE = {"size": 4, "distance": "Dot"}
INT8 = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8))
#: Keys this server sends that qdrant-client's models do not declare: ``ef``, the default search
#: breadth (a Vectorizer extension of ``hnsw_config``).
EXTENSIONS = {"config.hnsw_config.ef"}
#: Keys local mode fills that a Qdrant server leaves out when empty (``skip_serializing_if``).
SKIPPED_WHEN_EMPTY = {"config.metadata", "config.params.sparse_vectors"}


@pytest.fixture(scope="module")
def client(server: Running) -> Iterator[QdrantClient]:
    c = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    yield c
    c.close()


def _paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON object (``config.params.vectors.size``); lists are not entered."""
    if not isinstance(value, dict):
        return set()
    out = set()
    for key, child in value.items():
        path = f"{prefix}{key}"
        out.add(path)
        out |= _paths(child, f"{path}.")
    return out


def test_root_and_probes_answer_as_qdrant(server: Running, tmp_path: Any, kafka_bootstrap: str) -> None:
    r = server.http.get("/")
    assert set(r.json()) == {"title", "version", "commit"}, r.text
    assert r.json()["version"] == QDRANT_API_VERSION and r.json()["title"] == "vectorizer"
    commit = r.json()["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit), commit
    assert r.headers["x-vectorizer-version"] == __version__
    for probe in ("/healthz", "/livez"):
        r = server.http.get(probe)
        assert (r.status_code, r.text, r.headers["content-type"]) == (200, "healthz check passed",
                                                                      "text/plain; charset=utf-8")
    r = server.http.get("/readyz")
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "all shards are ready",
                                                                  "text/plain; charset=utf-8")
    assert server.http.get("/health").json()["result"] == {"status": "alive"}  # Vectorizer's JSON probes stay
    assert server.http.get("/ready").json()["result"]["status"] == "ready"

    settings = Settings(kafka_bootstrap=kafka_bootstrap, data_dir=tmp_path / "data")
    app = create_app(settings, Projector(settings), None)  # not recovered, no producer yet

    async def probes() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return [await c.get("/readyz"), await c.get("/healthz")]

    readyz, healthz = asyncio.run(probes())
    assert (readyz.status_code, readyz.text) == (503, "some shards are not ready")
    assert (healthz.status_code, healthz.text) == (200, "healthz check passed")


def test_collection_info_has_the_key_set_of_qdrant_and_local_mode(server: Running, client: QdrantClient) -> None:
    local = QdrantClient(":memory:")
    cases: list[dict[str, Any]] = [
        {"vectors_config": m.VectorParams(size=4, distance=m.Distance.DOT)},
        {"vectors_config": {"a": m.VectorParams(size=4, distance=m.Distance.COSINE, on_disk=True),
                            "b": m.VectorParams(size=2, distance=m.Distance.EUCLID),
                            "c": m.VectorParams(size=2, distance=m.Distance.DOT, quantization_config=INT8)},
         "sparse_vectors_config": {"s": m.SparseVectorParams()}},
    ]
    for kwargs in cases:
        name = unique("info")
        client.create_collection(name, **kwargs)
        local.create_collection(name, **kwargs)
        raw = server.http.get(f"/collections/{name}").json()["result"]
        parsed = m.CollectionInfo.model_validate(raw)
        assert _paths(raw) - _paths(parsed.model_dump(mode="json", exclude_unset=True)) == EXTENSIONS
        theirs = _paths(local.get_collection(name).model_dump(mode="json", exclude_unset=True))
        assert theirs - _paths(raw) <= SKIPPED_WHEN_EMPTY, "keys local mode has and this server lacks"
        assert raw["update_queue"] == {"length": 0}
        config = raw["config"]
        assert config["wal_config"] == {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1}
        optimizer = config["optimizer_config"]
        assert optimizer["max_segment_size"] == 128 * 1024  # Settings.segment_bytes, in kilobytes
        assert {k: optimizer[k] for k in ("deleted_threshold", "vacuum_min_vector_number", "default_segment_number",
                                          "indexing_threshold", "flush_interval_sec")} \
            == {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0,
                "indexing_threshold": 10000, "flush_interval_sec": 5}
        assert config["hnsw_config"]["ef_construct"] == 200  # what is built, where Qdrant's default is 100
    vectors = raw["config"]["params"]["vectors"]
    # on_disk as given, absent when not (in memory, as Qdrant's default); int8 rows rest on disk here.
    assert [vectors[v].get("on_disk") for v in "abc"] == [True, None, True]
    assert client.get_collection(name).config.params.vectors["a"].on_disk is True  # type: ignore[index]


def _refused(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["status"]["error"]


def test_validation_errors_are_qdrants_422(server: Running, client: QdrantClient) -> None:
    http, name = server.http, unique("valid")
    assert http.put(f"/collections/{name}", json={"vectors": DENSE}).status_code == 200
    points = f"/collections/{name}/points"
    zero = "value 0 invalid, must be 1 or larger"
    for path, body, field in ((f"{points}/search", {"vector": [1, 0, 0, 0], "limit": 0}, "limit"),
                              (f"{points}/query", {"query": [1, 0, 0, 0], "limit": 0}, "limit"),
                              (f"{points}/scroll", {"limit": 0}, "limit"),
                              (f"{points}/search/groups", {"vector": [1, 0, 0, 0], "group_by": "g",
                                                           "group_size": 0}, "group_size"),
                              (f"/collections/{name}/facet", {"key": "g", "limit": 0}, "limit")):
        assert _refused(http.post(path, json=body)) == (422, f"Validation error in JSON body: [{field}: {zero}]")
    status, error = _refused(http.post(f"{points}/query/batch", json={"searches": [{"query": [1, 0, 0, 0],
                                                                                    "limit": 0}]}))
    assert (status, error) == (422, f"Validation error in JSON body: [searches[0].limit: {zero}]")
    with pytest.raises(UnexpectedResponse) as raised:
        client.query_points(name, query=[1.0, 0.0, 0.0, 0.0], limit=0)
    assert raised.value.status_code == 422
    assert _refused(http.put(f"{points}/vectors", json={"points": []})) \
        == (422, "Validation error in JSON body: [points: must specify points to update]")
    assert _refused(http.post(f"{points}/vectors/delete", json={"points": [1], "vector": []})) \
        == (422, "Validation error in JSON body: [vector: must specify vector names to delete]")
    # A negative limit cannot be Qdrant's unsigned type: a 400, naming the field.
    status, error = _refused(http.post(f"{points}/scroll", json={"limit": -1}))
    assert status == 400 and "limit" in error

    assert _refused(http.put(f"/collections/{unique('big')}", json={"vectors": {"size": 65537, "distance": "Dot"}})) \
        == (422, "Validation error in JSON body: [vectors.size: value 65537 invalid, must be from 1 to 65536]")
    status, error = _refused(http.put(f"/collections/{unique('zero')}", json={"vectors": {"size": 0,
                                                                                            "distance": "Dot"}}))
    assert status == 400 and "vectors.size" in error  # 0 is not a NonZeroU64: Qdrant's 400

    assert _refused(http.post(f"{points}/count", params={"timeout": "0"}, json={})) \
        == (422, "Validation error in query parameters: [timeout: value 0 invalid, must be larger than 0]")
    for bad in ("-1", "soon"):
        status, error = _refused(http.post(f"{points}/count", params={"timeout": bad}, json={}))
        assert status == 400 and error.startswith("Deserialize error in query parameters: timeout: "), error

    slash = (422, 'Validation error in path parameters: [collection_name: collection name cannot contain "/" char]')
    assert _refused(http.put("/collections/a%2Fb", json={"vectors": DENSE})) == slash
    assert _refused(http.get("/collections/a%2Fb")) == slash
    assert _refused(http.put("/collections/a%3Cb", json={"vectors": DENSE})) \
        == (422, 'Validation error in path parameters: [collection_name: collection name cannot contain "<" char]')
    status, error = _refused(http.put(f"/collections/{'n' * 256}", json={"vectors": DENSE}))
    assert status == 422 and error.endswith("invalid, must be from 1 to 255 characters]"), error
    assert http.get("/collections/a%3Cb").status_code == 404  # Qdrant checks those characters at creation only
    names = {c["name"] for c in http.get("/collections").json()["result"]["collections"]}
    assert not names & {"a/b", "a<b", "n" * 256}


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The Prometheus text format's samples: name, labels, value."""
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            out.append((match[1], dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return out


def _metric(text: str, family: str, **labels: str) -> float:
    values = [value for n, found, value in _samples(text) if n == family and found == labels]
    assert len(values) == 1, f"no sample {family} {labels}"
    return values[0]


def test_metrics_carry_qdrants_names_beside_vectorizers(server: Running, client: QdrantClient) -> None:
    name = unique("metrics")
    client.create_collection(name, vectors_config={"a": m.VectorParams(size=2, distance=m.Distance.DOT)})
    client.upsert(name, [m.PointStruct(id=i, vector={"a": [1.0, float(i)]}) for i in range(3)], wait=True)
    server.http.get(f"/collections/{name}")
    server.http.get(f"/collections/{unique('absent')}")  # a 404
    text = server.http.get("/metrics").text
    assert _metric(text, "app_info", name="vectorizer", version=__version__) == 1.0
    collections = len(server.http.get("/collections").json()["result"]["collections"])
    assert _metric(text, "collections_total") == collections
    assert _metric(text, "collections_vector_total") >= 3
    assert _metric(text, "collection_points", id=name) == 3
    assert _metric(text, "collection_vectors", collection=name, vector="a") == 3
    assert _metric(text, "vectorizer_collection_points", collection=name) == 3
    assert _metric(text, "cluster_enabled") == 0
    info = {"method": "GET", "endpoint": "/collections/{collection_name}"}
    assert _metric(text, "rest_responses_total", **info, status="200") >= 1
    assert _metric(text, "rest_responses_fail_total", **info, status="404") >= 1
    assert _metric(text, "rest_responses_duration_seconds_count", **info, status="200") >= 1
    assert _metric(text, "rest_responses_avg_duration_seconds", **info, status="200") > 0
    assert not [n for n, labels, _ in _samples(text)  # Qdrant times successful answers only
                if n.startswith("rest_responses_duration") and labels.get("status") == "404"]
    assert "vectorizer_http_request_duration_seconds_bucket" in text


def test_cluster_and_telemetry_are_a_single_nodes(server: Running, client: QdrantClient) -> None:
    name = unique("cluster")
    client.create_collection(name, vectors_config={"secret_name": m.VectorParams(size=2, distance=m.Distance.DOT)})
    client.upsert(name, [m.PointStruct(id=i, vector={"secret_name": [1.0, 0.0]}) for i in range(4)], wait=True)
    assert server.http.get("/cluster").json()["result"] == {"status": "disabled"}
    assert isinstance(client.http.distributed_api.cluster_status().result, m.ClusterStatusOneOf)
    info = client.http.distributed_api.collection_cluster_info(name).result
    assert info is not None and info.shard_count == 1 and not info.remote_shards and not info.shard_transfers
    assert [(s.shard_id, s.points_count, s.state) for s in info.local_shards] == [(0, 4, m.ReplicaState.ACTIVE)]
    assert server.http.get(f"/collections/{unique('absent')}/cluster").status_code == 404

    def telemetry(**params: Any) -> dict[str, Any]:
        r = server.http.get("/telemetry", params=params)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()["result"]
        assert _paths(result) <= _paths(m.TelemetryData.model_validate(result).model_dump(mode="json")) | {
            p for p in _paths(result) if p.startswith("requests.rest.responses.")}  # keys the model maps
        return result

    collections = len(server.http.get("/collections").json()["result"]["collections"])
    plain = telemetry()
    assert plain["app"]["name"] == "vectorizer" and plain["app"]["version"] == __version__
    assert plain["collections"] == {"number_of_collections": collections}
    assert plain["cluster"] == {"enabled": False}
    assert plain["requests"]["rest"]["responses"]["GET /cluster"]["200"]["count"] >= 1
    detailed = telemetry(details_level=1)
    entries = detailed["collections"]["collections"]
    assert len(entries) == detailed["collections"]["number_of_collections"]
    assert {"vectors": 4, "optimizers_status": "ok"}.items() <= next(
        e for e in entries if "secret_name" in e["params"]["vectors"]).items()
    hidden = telemetry(details_level=1, anonymize="true")
    assert "secret_name" not in str(hidden) and telemetry()["id"] == plain["id"]
    assert server.http.get("/telemetry", params={"details_level": "-1"}).status_code == 400


def test_read_your_writes_makes_a_write_without_wait_wait(make_server: Callable[..., Running],
                                                          server: Running) -> None:
    assert Settings.load(environ={"VECTORIZER_READ_YOUR_WRITES": "true"}).read_your_writes is True
    assert Settings.load(environ={}).read_your_writes is False
    ryw = make_server(read_your_writes=True)
    for running, waits in ((ryw, True), (server, False)):
        name = unique("ryw")
        http = running.http
        assert http.put(f"/collections/{name}", json={"vectors": DENSE}).status_code == 200
        r = http.put(f"/collections/{name}/points", json={"points": [{"id": 1, "vector": [1, 0, 0, 0]}]})
        assert r.json()["result"]["status"] == ("completed" if waits else "acknowledged"), r.text
        if waits:  # read at once, no consistency token: applied already
            assert http.post(f"/collections/{name}/points/count", json={}).json()["result"]["count"] == 1
            got = http.get(f"/collections/{name}/points/1").json()["result"]
            assert got["id"] == 1
        r = http.put(f"/collections/{name}/points", params={"wait": "false"},
                     json={"points": [{"id": 2, "vector": [0, 1, 0, 0]}]})
        assert r.json()["result"]["status"] == "acknowledged", "an explicit wait=false answers at once"
