"""Random requests against every route: no input may yield a 5xx or stop the server.

Bodies mix free-form JSON (keys drawn from the API's own vocabulary, so requests get past
the first check) with near-valid shapes carrying wrong values: NaN and infinities, huge or
negative numbers, wrong types, deep nesting, invalid UTF-8. The only 5xx allowed is the
contract's 504 for a consistency token this server has not reached; the server runs with a
short default timeout so that such random tokens cost little.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Running, _settings, serving
from tests.reliability import record

COLLECTION = "fuzz"
VOCABULARY = [
    "points", "batch", "ids", "vectors", "payloads", "payload", "vector", "id", "filter", "must", "should",
    "must_not", "min_should", "key", "match", "value", "any", "except", "text", "range", "gt", "gte", "lt", "lte",
    "is_empty", "is_null", "has_id", "nested", "values_count", "geo_radius", "query", "nearest", "limit",
    "offset", "with_payload", "with_vector", "include", "exclude", "params", "hnsw_ef", "exact",
    "score_threshold", "searches", "keys", "size", "distance", "hnsw_config", "m", "ef_construct", "consistency",
    "order_by", "shard_key", "using", "prefetch", "name", "conditions",
]
ROUTES = [
    ("GET", "/"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"), ("GET", "/collections"),
    ("PUT", "/collections/{c}"), ("GET", "/collections/{c}"), ("GET", "/collections/{c}/exists"),
    ("DELETE", "/collections/{c}"), ("PUT", "/collections/{c}/points"), ("POST", "/collections/{c}/points"),
    ("GET", "/collections/{c}/points/{id}"), ("POST", "/collections/{c}/points/delete"),
    ("POST", "/collections/{c}/points/payload"), ("PUT", "/collections/{c}/points/payload"),
    ("POST", "/collections/{c}/points/payload/delete"), ("POST", "/collections/{c}/points/payload/clear"),
    ("POST", "/collections/{c}/points/scroll"), ("POST", "/collections/{c}/points/count"),
    ("POST", "/collections/{c}/points/query"), ("POST", "/collections/{c}/points/query/batch"),
    ("POST", "/collections/{c}/points/search"), ("PATCH", "/collections/{c}"), ("POST", "/{c}"),
]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["", "a", "0:1", "Cosine", "Dot", "Euclid", "a.b", "x[]", "00000000-0000-0000"
                                     "-0000-000000000001"]))
keys = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=6))
json_values = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=5),
                                                               st.dictionaries(keys, children, max_size=5)),
                           max_leaves=25)
small_ids = st.integers(min_value=0, max_value=40)
point_ids = st.one_of(small_ids, small_ids, st.integers(min_value=-3, max_value=2**64), st.uuids().map(str),
                      st.text(max_size=5), json_values)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-(2**70), 2**70))
good_vectors = st.lists(st.floats(-100, 100, width=32), min_size=3, max_size=3)
vectors = st.one_of(good_vectors, good_vectors, st.lists(numbers, min_size=3, max_size=3),
                    st.lists(numbers, max_size=5), st.lists(scalars, max_size=4), json_values)
conditions = st.one_of(
    st.fixed_dictionaries({"key": st.sampled_from(["a", "b.c", "t[]", "", "x[0]", "t"])}, optional={
        "match": st.one_of(st.fixed_dictionaries({"value": scalars}), st.fixed_dictionaries(
            {"any": st.lists(scalars, max_size=3)}), st.fixed_dictionaries({"except": st.lists(scalars, max_size=3)}),
            json_values),
        "range": st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte", "x"]), scalars, max_size=3),
        "is_empty": json_values, "values_count": json_values}),
    st.fixed_dictionaries({"has_id": st.lists(point_ids, max_size=3)}),
    st.fixed_dictionaries({"is_null": st.fixed_dictionaries({"key": scalars})}),
    json_values)
filters = st.one_of(st.fixed_dictionaries({}, optional={
    "must": st.one_of(st.lists(conditions, max_size=3), conditions),
    "should": st.lists(conditions, max_size=2), "must_not": st.lists(conditions, max_size=2),
    "min_should": json_values}), json_values)
selectors = st.one_of(st.booleans(), st.lists(st.sampled_from(["a", "b.c", "t[]", "x"]), max_size=2),
                      st.fixed_dictionaries({"include": json_values}), st.fixed_dictionaries({"exclude": json_values}),
                      json_values)
queries = st.fixed_dictionaries({}, optional={
    "query": st.one_of(vectors, point_ids, st.fixed_dictionaries({"nearest": st.one_of(vectors, point_ids)})),
    "filter": filters, "limit": st.one_of(st.integers(-2, 30), scalars), "offset": st.one_of(st.integers(-2, 30),
                                                                                              scalars),
    "with_payload": selectors, "with_vector": st.one_of(st.booleans(), json_values),
    "params": st.one_of(st.fixed_dictionaries({}, optional={"hnsw_ef": scalars, "exact": scalars}), json_values),
    "score_threshold": st.one_of(numbers, scalars), "consistency": scalars})
chosen = st.one_of(st.fixed_dictionaries({"points": st.one_of(st.lists(point_ids, max_size=4), json_values)}),
                   st.fixed_dictionaries({"filter": filters}))
payload_edit = st.tuples(chosen, st.fixed_dictionaries({}, optional={
    "payload": json_values, "key": scalars, "keys": st.one_of(st.lists(st.sampled_from(["a", "b.c", ""]),
                                                                       max_size=2), json_values)})).map(
    lambda pair: {**pair[0], **pair[1]})
upserts = st.one_of(
    st.fixed_dictionaries({"points": st.lists(st.fixed_dictionaries(
        {"id": point_ids, "vector": vectors}, optional={"payload": json_values}), max_size=4)}),
    st.fixed_dictionaries({"batch": st.fixed_dictionaries({"ids": st.lists(point_ids, max_size=3),
                                                          "vectors": st.lists(vectors, max_size=3)},
                                                         optional={"payloads": json_values})}))
SHAPES = {
    "/collections/{c}": st.fixed_dictionaries({"vectors": st.one_of(json_values, st.fixed_dictionaries(
        {"size": st.one_of(st.integers(-1, 5), scalars), "distance": scalars}))}, optional={
        "hnsw_config": st.one_of(st.fixed_dictionaries({}, optional={"m": scalars, "ef_construct": scalars}),
                                 json_values)}),
    "/collections/{c}/points": st.one_of(upserts, st.fixed_dictionaries({}, optional={
        "ids": st.one_of(st.lists(point_ids, max_size=4), json_values), "with_payload": selectors,
        "with_vector": json_values})),
    "/collections/{c}/points/delete": chosen,
    "/collections/{c}/points/payload": payload_edit,
    "/collections/{c}/points/payload/delete": payload_edit,
    "/collections/{c}/points/payload/clear": chosen,
    "/collections/{c}/points/scroll": st.fixed_dictionaries({}, optional={
        "offset": point_ids, "limit": st.one_of(st.integers(-1, 20), scalars), "filter": filters,
        "with_payload": selectors, "with_vector": json_values, "order_by": json_values}),
    "/collections/{c}/points/count": st.fixed_dictionaries({}, optional={"filter": filters, "exact": scalars}),
    "/collections/{c}/points/query": queries,
    "/collections/{c}/points/query/batch": st.fixed_dictionaries({"searches": st.lists(queries, max_size=3)}),
    "/collections/{c}/points/search": queries.map(lambda q: {("vector" if k == "query" else k): v
                                                             for k, v in q.items()}),
}
param_values = st.one_of(st.sampled_from(["true", "false", "0.05", "-1", "nan", "inf", "0:1", "0:99999999",
                                          "majority", "7", "x:y", "0:", ""]), st.text(max_size=8))
no_params: dict[str, str] = {}
params: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just(no_params), st.just(no_params), st.just(no_params), st.just({"wait": "true"}),
    st.dictionaries(st.sampled_from(["wait", "timeout", "consistency", "ordering"]), param_values, max_size=3))
names = st.one_of(st.just(COLLECTION), st.just(COLLECTION), st.just(COLLECTION), st.just("fuzz_other"),
                  st.text(min_size=1, max_size=8))


@pytest.fixture(scope="module")
def fuzz_server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serving(_settings(kafka_bootstrap, tmp_path_factory.mktemp("fuzz"), default_timeout=0.05)) as running:
        # The server's default timeout is tiny (to keep fuzz cases fast); setup waits explicitly.
        r = running.http.put(f"/collections/{COLLECTION}", params={"timeout": "60"},
                             json={"vectors": {"size": 3, "distance": "Cosine"}})
        assert r.status_code == 200, r.text
        r = running.http.put(f"/collections/{COLLECTION}/points", params={"wait": "true", "timeout": "60"},
                             json={"points": [{"id": i, "vector": [1.0, i, 2.0],
                                               "payload": {"a": i, "b": {"c": "x" * i}, "t": [i, None]}}
                                              for i in range(10)]})
        assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
        yield running


def _send(http: httpx.Client, method: str, path: str, query: dict[str, str], content: bytes | None) -> None:
    response = http.request(method, path, params=query, content=content,
                            headers={"content-type": "application/json"})
    timed_out = response.status_code == 504 and "not applied within" in response.text  # an unreachable token
    assert response.status_code < 500 or timed_out, (method, path, query, content[:300] if content else None,
                                                    response.text)
    if response.status_code >= 400:
        assert "error" in response.json()["status"], response.text


#: Cases each fuzz run actually sent (counted in the Hypothesis bodies), for the reliability report.
CASES: Counter[str] = Counter()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), route=st.sampled_from(ROUTES), name=names, point=point_ids, query=params)
def _random_request(fuzz_server: Running, data: st.DataObject, route: tuple[str, str], name: str, point: Any,
                    query: dict[str, str]) -> None:
    CASES["random_requests"] += 1
    method, template = route
    if method == "DELETE" and name == COLLECTION:
        name = "fuzz_other"
    shaped = SHAPES.get(template, json_values)
    body = data.draw(st.one_of(shaped, shaped, shaped, json_values, st.binary(max_size=40)), label="body")
    path = template.replace("{c}", quote(name, safe="")).replace("{id}", quote(str(point), safe=""))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    _send(fuzz_server.http, method, path, query, content)


def test_random_requests_never_fail_the_server(fuzz_server: Running) -> None:
    CASES["random_requests"] = 0
    _random_request(fuzz_server)
    assert CASES["random_requests"] > 0
    record("api", "test_random_requests_never_fail_the_server", fuzz_cases=CASES["random_requests"],
           server_errors=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(min_value=50, max_value=3000), where=st.sampled_from(["filter", "payload", "query"]))
def _deeply_nested_request(fuzz_server: Running, depth: int, where: str) -> None:
    CASES["deep_nesting"] += 1
    nested = "[" * depth + "]" * depth if where == "query" else '{"a":' * depth + "1" + "}" * depth
    if where == "payload":
        body = f'{{"points": [{{"id": 5, "vector": [1, 2, 3], "payload": {nested}}}]}}'
        _send(fuzz_server.http, "PUT", f"/collections/{COLLECTION}/points", {"wait": "true"}, body.encode())
    else:
        body = f'{{"{where}": {nested}}}'
        _send(fuzz_server.http, "POST", f"/collections/{COLLECTION}/points/query", {}, body.encode())


def test_deep_nesting(fuzz_server: Running) -> None:
    CASES["deep_nesting"] = 0
    _deeply_nested_request(fuzz_server)
    assert CASES["deep_nesting"] > 0
    record("api", "test_deep_nesting", fuzz_cases=CASES["deep_nesting"], server_errors=0)


def test_server_alive_afterwards(fuzz_server: Running) -> None:
    http = fuzz_server.http
    assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200
    r = http.put(f"/collections/{COLLECTION}/points", params={"wait": "true", "timeout": "30"},
                 json={"points": [{"id": 12345, "vector": [0.0, 0.0, 1.0], "payload": {"alive": True}}]})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
    r = http.post(f"/collections/{COLLECTION}/points/query", json={  # the fuzzer may have written ties
        "query": [0.0, 0.0, 1.0], "limit": 1, "with_payload": True, "filter": {"must": [{"has_id": [12345]}]}})
    assert r.json()["result"]["points"][0]["payload"] == {"alive": True}
    assert fuzz_server.replica.failure is None
