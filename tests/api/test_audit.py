"""The audit trail through the real broker: who wrote a point, and when, read back from the log.

Writes by several identities (the server's API key over REST, apps' own producers naming
themselves with ``caller=``) land on the topic with attribution headers; the history route and
``vectorizer audit`` read them back in log order. Records written before the headers existed
still apply and appear with caller unknown. Request ids are echoed and carried over REST (the
hot lane and FastAPI's routes) and gRPC.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import jwt
import numpy as np
import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from producers.producer import VectorProducer
from schemas import events as ev
from schemas.codec import encode
from tests.api.conftest import Running, _settings, serving, unique
from vectorizer.cli import app as cli
from vectorizer.cli import audit as audit_cli
from vectorizer.grpc_api.qdrant import points_pb2 as ppb
from vectorizer.grpc_api.qdrant import points_service_pb2_grpc as pgrpc
from vectorizer.grpc_api.qdrant import qdrant_common_pb2 as common

KEY = f"key-{secrets.token_hex(16)}"  # HS256 wants 32 bytes or more
READ_ONLY_KEY = f"ro-{secrets.token_hex(8)}"
PID = 7


@pytest.fixture(scope="module")
def audited(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = _settings(kafka_bootstrap, tmp_path_factory.mktemp("audited"), api_key=KEY,
                         read_only_api_key=READ_ONLY_KEY, jwt_rbac=True)
    with serving(settings) as running:  # its client sends KEY
        yield running


@pytest.fixture(scope="module")
def producers(audited: Running) -> Iterator[Callable[[str], VectorProducer]]:
    """Apps' own producers, one per caller name, on the server's topic."""
    made: dict[str, VectorProducer] = {}

    def producer(caller: str) -> VectorProducer:
        if caller not in made:
            made[caller] = VectorProducer(audited.settings, caller=caller)
        return made[caller]

    yield producer
    for p in made.values():
        p.close()


def _create(running: Running, name: str) -> None:
    r = running.http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}})
    assert r.status_code == 200, r.text


def _applied(running: Running, name: str, token: str) -> None:
    r = running.http.get(f"/collections/{name}", params={"consistency": token, "timeout": 30})
    assert r.status_code == 200, r.text


def _history(running: Running, name: str, point: object = PID, **params: Any) -> dict[str, Any]:
    """The point's history, asked with the read-only key (a read)."""
    r = running.http.get(f"/collections/{name}/points/{point}/history", params=params,
                         headers={"api-key": READ_ONLY_KEY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and isinstance(body["time"], float), body
    result: dict[str, Any] = body["result"]
    return result


# Identities: each writes point PID of a collection (payload {"n": n}) and says the caller and request
# id its write must be attributed to. A JWT subject is one more entry (a REST write with a bearer token).
Writer = Callable[[Running, Callable[[str], VectorProducer], str, int], tuple[str, str | None]]


def _rest(caller: str, credential: dict[str, str]) -> Writer:
    """A REST upsert (the hot lane) with ``credential``'s headers, attributed to ``caller``."""
    def write(running: Running, producers: Callable[[str], VectorProducer], name: str,
              n: int) -> tuple[str, str | None]:
        rid = f"req-{uuid.uuid4().hex[:12]}"
        r = httpx.put(f"{running.url}/collections/{name}/points", params={"wait": "true"}, timeout=60,
                      headers={**credential, "x-request-id": rid},  # only this credential
                      json={"points": [{"id": PID, "vector": [1, n], "payload": {"n": n}}]})
        assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
        assert r.headers["x-request-id"] == rid
        return caller, rid
    return write


def _jwt(subject: str) -> dict[str, str]:
    """A bearer JWT for ``subject`` with write access to every collection, signed with the API key."""
    return {"authorization": f"Bearer {jwt.encode({'sub': subject, 'access': 'm'}, KEY, algorithm='HS256')}"}


def _app_producer(caller: str) -> Writer:
    def write(running: Running, producers: Callable[[str], VectorProducer], name: str,
              n: int) -> tuple[str, str | None]:
        token = producers(caller).upsert(name, [PID], np.array([[1, n]], np.float32), [{"n": n}])
        _applied(running, name, str(token))
        return caller, None
    return write


WRITERS: dict[str, Writer] = {"api-key": _rest("api-key", {"api-key": KEY}),
                              "jwt:alice": _rest("jwt:alice", _jwt("alice")), "jwt:bob": _rest("jwt:bob", _jwt("bob")),
                              "app-alice": _app_producer("app-alice"), "app-bob": _app_producer("app-bob")}


@pytest.mark.parametrize(("first", "second"), [("app-alice", "app-bob"), ("api-key", "app-alice"),
                                               ("jwt:alice", "jwt:bob")])
def test_history_tells_who_wrote_a_point_and_when(audited: Running, producers: Callable[[str], VectorProducer],
                                                  first: str, second: str) -> None:
    name = unique("audit")
    _create(audited, name)
    expected = [WRITERS[who](audited, producers, name, n) for n, who in enumerate((first, second, first))]
    other = producers("app-bob").upsert(name, [PID + 1], np.array([[0, 1]], np.float32))  # another point's write
    _applied(audited, name, str(other))

    result = _history(audited, name)
    events = result["events"]
    assert result["next_offset"] is None
    assert [e["operation"] for e in events] == ["CollectionCreated"] + ["VectorsUpserted"] * 3
    assert events[0]["caller"] == "api-key" and events[0]["change"] == {"dimension": 2, "metric": "ip"}
    assert [(e["caller"], e["request_id"]) for e in events[1:]] == expected
    assert all(e["change"] == {"vector": True, "named": [], "sparse": [], "payload_keys": ["n"]} for e in events[1:])
    assert {e["partition"] for e in events} == {result["partition"]}
    offsets = [e["offset"] for e in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == 4
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in events)
    # The app producers name themselves; their producer id stays what it was.
    assert {e["producer"] for e in events[1:] if e["caller"].startswith("app-")} == {
        producers(c).producer_id for c in (first, second) if c.startswith("app-")}

    # The CLI reads the same from the topic, without the server; --caller selects one identity.
    assert _audit(audited, name, "--point", str(PID)) == events
    by_first = _audit(audited, name, "--caller", first)
    assert [e["offset"] for e in by_first] == [e["offset"] for e in events if e["caller"] == first]
    whole = _audit(audited, name)
    assert [e["operation"] for e in whole] == ["CollectionCreated"] + ["VectorsUpserted"] * 4
    assert whole[-1]["points"] == 1 and whole[-1]["caller"] == "app-bob"
    # --since: by Kafka's time index, then the envelope's time
    assert _audit(audited, name, "--since", "1h") == whole
    assert _audit(audited, name, "--since", whole[2]["time"]) == whole[2:]
    assert _audit(audited, name, "--since", "2999-01-01T00:00:00Z") == []


def _audit(running: Running, *args: str) -> list[dict[str, Any]]:
    s = running.settings
    result = CliRunner().invoke(cli, ["--kafka-bootstrap", s.kafka_bootstrap, "--topic", s.topic, "audit", *args,
                                      "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_a_producer_without_caller_is_its_producer_id_and_transactions_keep_their_framing(audited: Running) -> None:
    name = unique("audit_txn")
    _create(audited, name)
    with VectorProducer(audited.settings) as producer:
        with producer.transaction():
            producer.upsert(name, [PID], np.array([[1, 1]], np.float32))
            token = producer.set_payload(name, [PID], {"t": 1})
        _applied(audited, name, str(token))
        events = _history(audited, name)["events"][1:]
        assert [(e["operation"], e["caller"], e["producer"]) for e in events] == [
            ("VectorsUpserted", producer.producer_id, producer.producer_id),
            ("PayloadSet", producer.producer_id, producer.producer_id)]
    r = audited.http.get(f"/collections/{name}/points/{PID}")  # the framed transaction applied whole
    assert r.status_code == 200 and r.json()["result"]["payload"] == {"t": 1}, r.text


def test_records_from_before_the_trail_replay_and_show_caller_unknown(audited: Running,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An event written without attribution headers (as every producer wrote before them) applies as
    before and is listed with caller and request id unknown."""
    name = unique("audit_old")
    _create(audited, name)
    old = ev.VectorsUpserted(ev.EventMeta.new(name, "producer-from-before"), (PID,), np.array([[1, 2]], np.float32),
                             ({"old": True},))
    kafka = KafkaProducer(bootstrap_servers=audited.settings.kafka_bootstrap)
    try:
        sent = kafka.send(audited.settings.topic, key=name.encode(), value=encode(old)).get(timeout=30)
    finally:
        kafka.close()
    _applied(audited, name, f"{sent.partition}:{sent.offset}")
    r = audited.http.get(f"/collections/{name}/points/{PID}")
    assert r.status_code == 200 and r.json()["result"]["payload"] == {"old": True}, r.text
    events = _history(audited, name)["events"]
    assert events[-1] == {"time": events[-1]["time"], "operation": "VectorsUpserted", "collection": name,
                          "caller": None, "request_id": None, "producer": "producer-from-before",
                          "partition": sent.partition, "offset": sent.offset,
                          "change": {"vector": True, "named": [], "sparse": [], "payload_keys": ["old"]}}
    line = CliRunner().invoke(cli, ["--kafka-bootstrap", audited.settings.kafka_bootstrap, "--topic",
                                    audited.settings.topic, "audit", name, "--point", str(PID)])
    assert line.exit_code == 0, line.output
    assert line.stdout.splitlines()[-1].endswith("caller=-  request=-  vector payload_keys=old"), line.stdout
    # a long scan shows its progress; off a terminal as plain lines on stderr, not one per record
    monkeypatch.setattr(audit_cli, "PROGRESS_ABOVE_RECORDS", 0)
    scanned = CliRunner().invoke(cli, ["--kafka-bootstrap", audited.settings.kafka_bootstrap, "--topic",
                                       audited.settings.topic, "audit", name])
    assert scanned.exit_code == 0, scanned.output
    progress = [x for x in scanned.stderr.splitlines() if x.startswith(f"audit {audited.settings.topic}: ")]
    assert 1 <= len(progress) <= 2 and "records" in progress[-1] and " 2 writes" in progress[-1], scanned.stderr
    assert len(scanned.stdout.splitlines()) == 2  # the creation and the old upsert


def test_request_ids_are_echoed_and_carried_to_the_log(audited: Running) -> None:
    name = unique("audit_rid")
    _create(audited, name)
    base = f"/collections/{name}/points"
    # FastAPI's route (set_payload is not on the hot lane), with the client's id
    r = audited.http.post(f"{base}/payload", params={"wait": "true"}, headers={"x-request-id": "client-id-1"},
                          json={"payload": {"k": 1}, "points": [PID]})
    assert r.status_code == 200 and r.headers["x-request-id"] == "client-id-1", r.text
    # no id given, or one not acceptable (too long, a space): the server makes one, and echoes it
    made = []
    for given in (None, "x" * 129, "has space"):
        headers = {} if given is None else {"x-request-id": given}
        r = audited.http.put(base, params={"wait": "true"}, headers=headers,
                             json={"points": [{"id": PID, "vector": [1, 0]}]})
        assert r.status_code == 200, r.text
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), r.headers
        made.append(r.headers["x-request-id"])
    assert len(set(made)) == 3
    events = _history(audited, name)["events"]
    assert [(e["operation"], e["request_id"]) for e in events[1:]] == [
        ("PayloadSet", "client-id-1"), *[("VectorsUpserted", m) for m in made]]
    assert events[1]["change"] == {"payload_keys": ["k"]}
    # a refused request has one too (the id is given before the key is checked)
    with httpx.Client(base_url=audited.url) as anonymous:
        refused = anonymous.get("/collections", headers={"x-request-id": "no-key"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "no-key"


def test_grpc_writes_carry_the_calls_request_id(audited: Running) -> None:
    name = unique("audit_grpc")
    _create(audited, name)
    with grpc.insecure_channel(f"127.0.0.1:{audited.grpc_port}") as channel:
        point = ppb.PointStruct(id=common.PointId(num=PID),
                                vectors=ppb.Vectors(vector=ppb.Vector(dense=ppb.DenseVector(data=[1, 0]))))
        _, call = pgrpc.PointsStub(channel).Upsert.with_call(
            ppb.UpsertPoints(collection_name=name, points=[point], wait=True),
            metadata=[("api-key", KEY), ("x-request-id", "grpc-call-1")])
    assert ("x-request-id", "grpc-call-1") in tuple(call.trailing_metadata())
    events = _history(audited, name)["events"]
    assert [(e["operation"], e["caller"], e["request_id"]) for e in events[1:]] == [
        ("VectorsUpserted", "api-key", "grpc-call-1")]


def test_history_is_bounded_paged_and_refuses_what_it_cannot_answer(audited: Running,
                                                                    producers: Callable[[str], VectorProducer]
                                                                    ) -> None:
    name = unique("audit_page")
    _create(audited, name)
    alice = producers("app-alice")
    alice.upsert(name, [PID, "a/history"], np.eye(2, dtype=np.float32))
    for n in range(3):
        token = alice.set_payload(name, [PID, "a/history"], {"n": n})
    _applied(audited, name, str(token))
    every = _history(audited, name)["events"]
    assert len(every) == 5
    first = _history(audited, name, limit=2)
    assert first["events"] == every[:2] and first["next_offset"] == every[1]["offset"] + 1
    rest = _history(audited, name, limit=10, offset=first["next_offset"])
    assert rest["events"] == every[2:] and rest["next_offset"] is None
    # an alias names the collection, as on every collection route
    r = audited.http.post("/collections/aliases", json={"actions": [{"create_alias": {
        "collection_name": name, "alias_name": f"{name}_alias"}}]})
    assert r.status_code == 200, r.text
    assert _history(audited, f"{name}_alias")["events"] == every
    # a string id with "/" in it: its history (…/a%2Fhistory/history) and the point itself (…/a%2Fhistory)
    assert len(_history(audited, name, point="a%2Fhistory")["events"]) == 5
    r = audited.http.get(f"/collections/{name}/points/a%2Fhistory")
    assert r.status_code == 200 and r.json()["result"]["id"] == "a/history", r.text
    # errors in Qdrant's shapes
    missing = unique("audit_missing")
    r = audited.http.get(f"/collections/{missing}/points/{PID}/history")
    assert r.status_code == 404 and r.json()["status"]["error"] == \
        f"Not found: Collection `{missing}` doesn't exist!", r.text
    r = audited.http.get(f"/collections/{name}/points/{PID}/history", params={"limit": 0})
    assert r.status_code == 422 and "limit" in r.json()["status"]["error"], r.text
    # a write by the read-only key stays a 403; the history is a read
    r = audited.http.put(f"/collections/{name}/points", headers={"api-key": READ_ONLY_KEY},
                         json={"points": [{"id": PID, "vector": [1, 0]}]})
    assert r.status_code == 403, r.text
