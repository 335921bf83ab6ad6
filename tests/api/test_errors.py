"""Error statuses (400 naming the field, 401, 403, 404, 409, 413, 503, 504) and the service routes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest

from consumers.projector import Projector
from infra.settings import Settings
from producers.errors import PublishFailed
from tests.api.conftest import Running, unique
from vectorizer.api.app import create_app
from vectorizer.api.errors import response_for, status_for


@pytest.fixture(scope="module")
def coll(server: Running) -> str:
    name = unique("errors")
    r = server.http.put(f"/collections/{name}", json={"vectors": {"size": 3, "distance": "Cosine"}})
    assert r.status_code == 200, r.text
    r = server.http.put(f"/collections/{name}/points", params={"wait": "true"},
                        json={"points": [{"id": 1, "vector": [1, 0, 0], "payload": {"a": 1}}]})
    assert r.status_code == 200, r.text
    return name


def _error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    message = r.json()["status"]["error"]
    for word in words:
        assert word in message, (word, message)


def test_400_names_the_bad_field(server: Running, coll: str) -> None:
    http = server.http
    points = f"/collections/{coll}/points"
    _error(http.put(points, json={"points": [{"id": 2, "vector": [1, 0, 0]}, {"id": 3, "vector": [1, 0]}]}),
           400, "points[1].vector", "dimension")
    _error(http.put(points, content=b'{"points": [{"id": 2, "vector": [1, NaN, 0]}]}',
                    headers={"content-type": "application/json"}), 400, "points[0].vector", "NaN")
    _error(http.put(points, json={"batch": {"ids": [1, 2], "vectors": [[1, 2, 3], [1, "x", 3]]}}),
           400, "batch.vectors[1][1]")
    _error(http.put(points, json={"points": [{"id": -4, "vector": [1, 0, 0]}]}), 400, "points[0].id")
    _error(http.put(points, json={"points": [{"id": 1.5, "vector": [1, 0, 0]}]}), 400, "points[0].id")
    _error(http.put(points, json={"points": [{"id": 1, "vector": [1, 0, 0], "payload": [1]}]}),
           400, "points[0].payload")
    _error(http.put(points, json={"pints": []}), 400, "pints")
    _error(http.put(f"/collections/{unique('new')}", json={"vectors": {"size": 3, "distance": "Hamming"}}),
           400, "vectors.distance", "Hamming")
    _error(http.put(f"/collections/{unique('new')}", json={"vectors": {"size": 0, "distance": "Dot"}}),
           400, "vectors.size")
    _error(http.put("/collections/bad%20name", json={"vectors": {"size": 3, "distance": "Dot"}}),
           400, "collection name")
    _error(http.post(f"{points}/query", json={"query": [1, 0, 0], "filter": {"must": [{"key": "a", "range":
                                                                                         {"gt": "x"}}]}}),
           400, "filter.must[0].range.gt")
    _error(http.post(f"{points}/query", json={"query": [1, 0]}), 400, "query", "dimension")
    _error(http.post(f"{points}/query", json={"query": [1, 0, 0], "limit": 0}), 422, "limit")  # Qdrant's range
    _error(http.post(f"{points}/query/batch", json={"searches": [{"query": [1, 0, 0]}, {"query": "x" * 600}]}),
           400, "searches[1].query")
    _error(http.post(f"{points}/scroll", json={"with_payload": "yes"}), 400, "with_payload")
    _error(http.post(f"{points}/count", content=b"{not json", headers={"content-type": "application/json"}),
           400, "body")
    _error(http.post(f"{points}/count", json=[1, 2]), 400, "body", "object")
    _error(http.post(f"{points}/count", params={"timeout": "-1"}, json={}), 400, "timeout")
    _error(http.put(points, params={"wait": "maybe"}, json={"points": []}), 400, "wait")
    _error(http.get(f"{points}/{'9' * 30}"), 400, "id")


def test_404_409_and_unknown_routes(server: Running, coll: str) -> None:
    http = server.http
    missing = unique("missing")
    _error(http.get(f"/collections/{missing}"), 404, missing)
    _error(http.post(f"/collections/{missing}/points/query", json={"query": [1, 0, 0]}), 404, missing)
    _error(http.put(f"/collections/{missing}/points", json={"points": []}), 404, missing)
    _error(http.get(f"/collections/{coll}/points/77"), 404, "77")
    _error(http.post(f"/collections/{coll}/points/query", json={"query": 77}), 404, "77")
    _error(http.put(f"/collections/{coll}", json={"vectors": {"size": 3, "distance": "Dot"}}), 409, "exists")
    _error(http.get("/no/such/route"), 404)
    r = http.patch(f"/collections/{coll}/points")
    assert r.status_code == 405 and "error" in r.json()["status"]


def test_413_on_a_body_over_the_limit(make_server: Callable[..., Running]) -> None:
    running = make_server(max_body_bytes=4096)
    http = running.http
    r = http.put("/collections/small", json={"vectors": {"size": 3, "distance": "Dot"}})
    assert r.status_code == 200
    big = {"points": [{"id": i, "vector": [0.5, 0.5, 0.5], "payload": {"pad": "x" * 100}} for i in range(60)]}
    _error(http.put("/collections/small/points", json=big), 413, "4096")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"points": ['
        for i in range(60):
            yield b'{"id": %d, "vector": [1, 2, 3], "payload": {"pad": "%s"}},' % (i, b"x" * 100)
        yield b'{"id": 999, "vector": [1, 2, 3]}]}'

    _error(http.put("/collections/small/points", content=chunks()), 413)
    r = http.put("/collections/small/points", params={"wait": "true"}, json={"points": big["points"][:5]})
    assert r.status_code == 200, r.text


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_api_keys(make_server: Callable[..., Running]) -> None:
    running = make_server(api_key="s3cret", read_only_api_key="look")
    url = running.url
    assert httpx.get(f"{url}/collections").status_code == 401
    assert httpx.get(f"{url}/collections", headers={"api-key": "nope"}).status_code == 401
    create = {"vectors": {"size": 2, "distance": "Dot"}}
    _error(httpx.put(f"{url}/collections/k", json=create, headers={"api-key": "look"}), 403, "read")
    assert httpx.put(f"{url}/collections/k", json=create, headers={"api-key": "s3cret"}).status_code == 200
    assert httpx.put(f"{url}/collections/k/points", params={"wait": "true"}, headers={"api-key": "s3cret"},
                     json={"points": [{"id": 1, "vector": [1, 2]}]}).status_code == 200
    for key in ("look", "s3cret"):
        r = httpx.post(f"{url}/collections/k/points/query", json={"query": [1, 1]}, headers={"api-key": key})
        assert r.status_code == 200 and r.json()["result"]["points"][0]["id"] == 1
        r = httpx.post(f"{url}/collections/k/points/scroll", json={}, headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200
    _error(httpx.post(f"{url}/collections/k/points/delete", json={"points": [1]}, headers={"api-key": "look"}),
           403)
    assert httpx.get(f"{url}/metrics").status_code == 401
    for probe in ("/", "/health", "/ready"):  # probes need a key too; the read-only one is enough
        assert httpx.get(f"{url}{probe}").status_code == 401
        assert httpx.get(f"{url}{probe}", headers={"api-key": "look"}).status_code == 200

    from importlib.metadata import version

    from qdrant_client import QdrantClient
    from qdrant_client.common.version_check import get_server_version, is_compatible

    # qdrant-client's version check (GET / with the key), run here in the test's thread: the client
    # runs it in a background thread that can outlive the test and only warns.
    server_version = get_server_version(url, {"api-key": "look"}, None, 30)
    assert server_version and is_compatible(version("qdrant-client"), server_version), server_version
    client = QdrantClient(url=url, api_key="look", prefer_grpc=False, check_compatibility=False)
    assert client.count("k").count == 1
    with pytest.raises(Exception, match="403"):
        client.delete_collection("k")


def test_service_routes(server: Running, coll: str) -> None:
    http = server.http
    assert http.get("/").json()["title"] == "vectorizer"
    assert http.get("/health").status_code == 200
    assert http.get("/ready").status_code == 200
    assert "/collections/{collection_name}/points/query" in http.get("/openapi.json").json()["paths"]
    http.post(f"/collections/{coll}/points/count", json={})
    text = http.get("/metrics").text
    for metric in ("vectorizer_http_request_duration_seconds_bucket", "vectorizer_events_applied_total",
                   "vectorizer_lag_records{partition=\"0\"}", "vectorizer_applied_offset{partition=\"0\"}",
                   f'vectorizer_collection_points{{collection="{coll}"}} 1.0', "process_resident_memory_bytes",
                   'route="/collections/{collection_name}/points/count"'):
        assert metric in text, metric


def test_503_before_recovery_and_when_kafka_fails(tmp_path: object, kafka_bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, data_dir=tmp_path / "data")  # type: ignore[operator]
    app = create_app(settings, Projector(settings), None)  # not recovered, no producer yet

    async def requests() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return [await client.get("/health"), await client.get("/ready"), await client.get("/collections"),
                    await client.post("/collections/x/points/query", json={"query": [1]})]

    health, *refused = asyncio.run(requests())
    assert health.status_code == 200
    for r in refused:
        _error(r, 503, "retry")
        assert r.headers["retry-after"] == "1"
    answer = response_for(PublishFailed("Kafka did not acknowledge the write"))
    assert status_for(PublishFailed("x")) == 503 and answer.headers["retry-after"] == "1"
