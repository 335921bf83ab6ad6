"""Security: API keys on every route, the read-only key, listening addresses, secrets in logs.

With an API key configured no request without a valid key succeeds, on any route the
OpenAPI document lists (and the probes it leaves out, and unknown paths), with any method.
The read-only key reads everything and writes nothing. A real ``vectorizer serve`` process
listens on loopback only by default, and neither the keys, nor a key a client got wrong,
nor the catalog's password appear anywhere in its log, even at DEBUG level.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from starlette.types import Message

from infra.kafka.launcher import LocalBroker, NodeSpec
from infra.settings import Settings
from tests.api.conftest import Running, _settings, serving, unique
from tests.conftest import IN_CI, LOCAL_PG, ROOT, free_port
from tests.helpers import wait_until
from tests.reliability import record
from vectorizer.api.auth import AuthMiddleware, is_read
from vectorizer.api.server import Replica, exposure_warning

KEY = f"key-{secrets.token_hex(12)}"
READ_ONLY_KEY = f"ro-{secrets.token_hex(12)}"
WRONG_KEY = f"typo-{KEY[4:-1]}"  # what a client might send by mistake: a secret all the same
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
#: Paths the OpenAPI document leaves out, and paths no route answers.
UNLISTED = ("/healthz", "/livez", "/readyz", "/openapi.json", "/docs/", "/docs/x.js", "/redoc", "/no/such/route",
            "/collections/{collection_name}/points/a%2Fb", "/collections/{collection_name}/nothing")
#: Credentials that must all be refused (on every route below, the first four).
REFUSED: list[dict[str, str]] = [
    {}, {"api-key": WRONG_KEY}, {"authorization": f"Bearer {WRONG_KEY}"}, {"api-key": ""},
    {"api-key": KEY.upper()}, {"api-key": KEY[:-1]}, {"api-key": KEY + "x"}, {"api-key": f"Bearer {KEY}"},
    {"authorization": KEY}, {"authorization": f"Basic {base64.b64encode(f'user:{KEY}'.encode()).decode()}"},
    {"x-api-key": KEY}, {"api_key": KEY}, {"authorization": f"Bearer {READ_ONLY_KEY}x"},
    {"cookie": f"api-key={KEY}"},
]
#: The routes that only read; every other route the OpenAPI document lists is a write.
READS = {("GET", path) for path in ("/", "/health", "/ready", "/metrics", "/telemetry", "/cluster", "/collections",
                                    "/collections/{collection_name}/cluster",
                                    "/collections/{collection_name}", "/collections/{collection_name}/exists",
                                    "/collections/{collection_name}/points/{point_id}",
                                    "/collections/{collection_name}/points/{point_id}/history",
                                    "/collections/{collection_name}/snapshots",
                                    "/collections/{collection_name}/snapshots/{snapshot_name}", "/snapshots",
                                    "/snapshots/{snapshot_name}", "/aliases",
                                    "/collections/{collection_name}/aliases")} | {
    ("POST", f"/collections/{{collection_name}}/points{tail}")
    for tail in ("", "/scroll", "/count", "/query", "/query/batch", "/query/groups", "/search", "/search/batch",
                 "/search/groups", "/search/matrix/pairs", "/search/matrix/offsets")} | {
    ("POST", "/collections/{collection_name}/search/text"), ("POST", "/collections/{collection_name}/facet")} | {
    ("GET", f"/vectorizer/{tail}") for tail in ("status", "collections", "snapshots", "verify", "dead_letters",
                                                     "latency")} | {
    ("POST", "/vectorizer/verify")}
POINTS = "/collections/{collection_name}/points"
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/collections/{collection_name}"): {"vectors": {"size": 2, "distance": "Dot"}},
    ("PUT", POINTS): {"points": [{"id": 3, "vector": [1, 1], "payload": {"w": 1}}]},
    ("POST", POINTS): {"ids": [1, 2]},
    ("POST", f"{POINTS}/delete"): {"points": [1]},
    ("POST", f"{POINTS}/payload"): {"payload": {"w": 1}, "points": [1]},
    ("PUT", f"{POINTS}/payload"): {"payload": {"w": 1}, "points": [1]},
    ("POST", f"{POINTS}/payload/delete"): {"keys": ["a"], "points": [1]},
    ("POST", f"{POINTS}/payload/clear"): {"points": [1]},
    ("POST", f"{POINTS}/scroll"): {"limit": 5},
    ("POST", f"{POINTS}/count"): {},
    ("POST", f"{POINTS}/query"): {"query": [1, 0]},
    ("POST", f"{POINTS}/query/batch"): {"searches": [{"query": [1, 0]}]},
    ("POST", f"{POINTS}/search"): {"vector": [1, 0], "limit": 1},
    ("POST", f"{POINTS}/search/batch"): {"searches": [{"vector": [1, 0], "limit": 1}]},
    ("POST", f"{POINTS}/query/groups"): {"query": [1, 0], "group_by": "a"},
    ("POST", f"{POINTS}/search/groups"): {"vector": [1, 0], "group_by": "a"},
    ("POST", f"{POINTS}/search/matrix/pairs"): {"sample": 2, "limit": 1},
    ("POST", f"{POINTS}/search/matrix/offsets"): {"sample": 2, "limit": 1},
    ("PUT", f"{POINTS}/vectors"): {"points": [{"id": 1, "vector": [1, 0]}]},
    ("POST", f"{POINTS}/vectors/delete"): {"points": [3], "vector": [""]},
    ("POST", "/collections/{collection_name}/search/text"): {"query": "hello"},
    ("PUT", f"{POINTS}/text"): {"points": [{"id": 5, "text": "hello"}]},
    ("POST", "/collections/{collection_name}/facet"): {"key": "a"},
    ("PUT", "/collections/{collection_name}/index"): {"field_name": "w", "field_schema": "keyword"},
    ("POST", f"{POINTS}/batch"): {"operations": [{"set_payload": {"payload": {"w": 1}, "points": [1]}}]},
    ("POST", "/collections/aliases"): {"actions": [{"delete_alias": {"alias_name": "no_such_alias"}}]},
}
#: Reads the read-only key passes, answered 400 because of the collection (it has no text embedder,
#: no index on the faceted field).
NOT_FOR_THIS_COLLECTION = {("POST", "/collections/{collection_name}/search/text"): "no embedder",
                           ("POST", "/collections/{collection_name}/facet"): "No appropriate index"}
STORED = [{"id": 1, "vector": [1, 0], "payload": {"a": "x"}}, {"id": 2, "vector": [0, 1], "payload": {"a": "y"}}]


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = _settings(kafka_bootstrap, tmp_path_factory.mktemp("secured"), api_key=KEY,
                         read_only_api_key=READ_ONLY_KEY)
    with serving(settings) as running:  # its client sends KEY
        yield running


@pytest.fixture(scope="module")
def coll(secured: Running) -> str:
    name = unique("sec")
    _create(secured.http, name)
    return name


def _create(http: httpx.Client, name: str) -> None:
    r = http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}})
    assert r.status_code == 200, r.text
    r = http.put(f"/collections/{name}/points", params={"wait": "true"}, json={"points": STORED})
    assert r.status_code == 200, r.text


def _fill(template: str, collection: str) -> str:
    return template.replace("{collection_name}", collection).replace("{point_id}", "1").replace(
        "{field_name}", "w").replace("{snapshot_name}", "missing.snapshot")


#: Routes whose answer with a good key is about the request, not the key: a snapshot this test never
#: made (404), a recovery without a snapshot to recover from (400).
SNAPSHOT_FILES = ("/collections/{collection_name}/snapshots/{snapshot_name}", "/snapshots/{snapshot_name}")
NOT_THE_KEY = {**{(m, p): 404 for m in ("GET", "DELETE") for p in SNAPSHOT_FILES},
               ("PUT", "/collections/{collection_name}/snapshots/recover"): 400,
               ("POST", "/collections/{collection_name}/snapshots/upload"): 400,
               ("PUT", f"{POINTS}/text"): 400}  # the victim has no embedder: a 400 about the collection


def _routes(http: httpx.Client) -> list[tuple[str, str]]:
    """``(method, path template)`` of every operation in the OpenAPI document."""
    r = http.get("/openapi.json")
    assert r.status_code == 200, r.text
    routes = [(method.upper(), path) for path, ops in r.json()["paths"].items() for method in ops]
    assert len(routes) >= 24 and ("GET", "/ready") in routes, routes
    return routes


def _assert_untouched(http: httpx.Client, collection: str) -> None:
    """The collection still holds exactly what the fixture wrote, once everything published before is applied."""
    assert stored(http, collection) == STORED


def stored(http: httpx.Client, collection: str) -> list[dict[str, Any]]:
    """The collection's points (id, vector, payload), once everything published before is applied."""
    barrier = http.put(f"/collections/barrier_{uuid.uuid4().hex[:8]}", params={"timeout": "60"},
                       json={"vectors": {"size": 2, "distance": "Dot"}})  # answers once applied: so is all before
    assert barrier.status_code == 200, barrier.text
    r = http.post(f"/collections/{collection}/points/scroll", json={"with_vector": True})
    assert r.status_code == 200, r.text
    return [{"id": p["id"], "vector": p["vector"], "payload": p["payload"]} for p in r.json()["result"]["points"]]


def test_every_route_refuses_a_missing_or_wrong_key(secured: Running, coll: str) -> None:
    templates = list(dict.fromkeys([path for _, path in _routes(secured.http)] + list(UNLISTED)))
    checked = 0
    with httpx.Client(base_url=secured.url, timeout=30) as anonymous:
        def refused(method: str, path: str, headers: dict[str, str], body: Any) -> None:
            nonlocal checked
            r = anonymous.request(method, path, headers=headers, json=body)
            checked += 1
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            if method != "HEAD":
                assert set(r.json()) == {"status", "time"} and "key" in r.json()["status"]["error"], r.text

        for template in templates:
            for method in METHODS:
                for headers in REFUSED[:4]:
                    refused(method, _fill(template, coll), headers, BODIES.get((method, template)))
        for method, template in (("GET", "/ready"), ("GET", "/"), ("POST", f"{POINTS}/query"), ("PUT", POINTS),
                                 ("DELETE", "/collections/{collection_name}")):
            for headers in REFUSED:
                refused(method, _fill(template, coll), headers, BODIES.get((method, template)))
        # Nothing else reaches the server either: a raw request with the key in the query string.
        r = anonymous.get("/collections", params={"api-key": KEY, "api_key": KEY})
        checked += 1
        assert r.status_code == 401
    _assert_untouched(secured.http, coll)
    assert secured.http.get(f"/collections/{coll}").status_code == 200
    record("security", "test_every_route_refuses_a_missing_or_wrong_key", auth_checks=checked)


def test_read_only_key_reads_everything_and_writes_nothing(secured: Running, coll: str) -> None:
    routes = _routes(secured.http)
    victim = unique("victim")  # the full key's writes go here, so `coll` stays as written
    _create(secured.http, victim)
    checked = 0
    with httpx.Client(base_url=secured.url, timeout=30) as client:
        for method, template in routes:
            path = _fill(template, coll)
            body = BODIES.get((method, template))
            read = (method, template) in READS
            assert is_read(method, path) == read, (method, path, "auth.is_read disagrees with this test")
            for headers in ({"api-key": READ_ONLY_KEY}, {"authorization": f"Bearer {READ_ONLY_KEY}"}):
                r = client.request(method, path, headers=headers, json=body, params={"wait": "true"})
                checked += 1
                if read and (method, template) in NOT_THE_KEY:
                    assert r.status_code == NOT_THE_KEY[method, template], (method, path, r.status_code, r.text)
                elif (method, template) in NOT_FOR_THIS_COLLECTION:
                    assert r.status_code == 400 and NOT_FOR_THIS_COLLECTION[method, template] in r.text, \
                        (method, path, r.status_code, r.text)
                elif read:
                    assert 200 <= r.status_code < 300, (method, path, r.status_code, r.text)
                else:
                    assert r.status_code == 403, (method, path, r.status_code, r.text)
                    assert "read" in r.json()["status"]["error"], r.text
        for probe in UNLISTED[:4]:  # probes Qdrant has beside the documented ones
            r = client.get(probe, headers={"api-key": READ_ONLY_KEY})
            checked += 1
            assert r.status_code == 200, (probe, r.text)
        _assert_untouched(secured.http, coll)
        # The refused writes were well-formed: the full key is accepted for each (a 409 for creating an
        # existing collection is an answer about the body, not the key).
        deleting_it_last = {("DELETE", "/collections/{collection_name}")}
        for method, template in sorted(routes, key=lambda route: (route[0] == "DELETE", route in deleting_it_last)):
            if (method, template) in READS:
                continue
            r = client.request(method, _fill(template, victim), headers={"api-key": KEY},
                               json=BODIES.get((method, template)), params={"wait": "true"})
            checked += 1
            assert r.status_code in (200, 409, NOT_THE_KEY.get((method, template))), \
                (method, template, r.status_code, r.text)
    assert secured.http.get(f"/collections/{victim}/exists").json()["result"]["exists"] is False
    record("security", "test_read_only_key_reads_everything_and_writes_nothing", auth_checks=checked)


def test_exposure_warning(tmp_path: Path, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    base = Settings(kafka_bootstrap=kafka_bootstrap, data_dir=tmp_path / "data")
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert exposure_warning(base.replace(http=f"{host}:1")) is None, host
    for host in ("0.0.0.0", "[::]", "10.1.2.3", "myhost.example"):
        warning = exposure_warning(base.replace(http=f"{host}:1"))
        assert warning is not None and "SECURITY WARNING" in warning and "VECTORIZER_API_KEY" in warning, host
        assert exposure_warning(base.replace(http=f"{host}:1", api_key=KEY)) is None
        assert exposure_warning(base.replace(http=f"{host}:1", read_only_api_key=READ_ONLY_KEY)) is None
    with caplog.at_level(logging.WARNING, logger="vectorizer.api.server"):
        Replica(base.replace(http=f"0.0.0.0:{free_port()}"))  # constructed only: it never binds
    assert any("SECURITY WARNING" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_websocket_handshake_needs_a_key_too() -> None:
    """No route speaks WebSocket, but a handshake without a key never reaches the application."""
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    async def handshake(headers: list[tuple[bytes, bytes]]) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message) -> None:
            sent.append(message)

        middleware = AuthMiddleware(app, Settings(api_key=KEY, read_only_api_key=READ_ONLY_KEY))
        await middleware({"type": "websocket", "path": "/collections", "headers": headers}, receive, send)
        return sent

    for headers in ([], [(b"api-key", WRONG_KEY.encode())]):
        assert asyncio.run(handshake(headers)) == [{"type": "websocket.close", "code": 1008}]
    assert reached == []
    assert asyncio.run(handshake([(b"api-key", KEY.encode())])) == [] and reached == ["websocket"]


# A real `vectorizer serve` process ------------------------------------------------------------------
def _serve(tmp: Path, kafka_bootstrap: str, env: dict[str, str], *, debug: bool = False,
           log: str = "serve.log") -> subprocess.Popen[bytes]:
    """``python -m vectorizer serve`` with ``env`` over a clean environment; output in ``tmp/log``.

    ``debug``: with the root logger at DEBUG (there is no flag for it), through the same CLI.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VECTORIZER_")}
    clean["VECTORIZER_GRPC"] = "127.0.0.1:0"  # a free port: never Qdrant's 6334, which others may hold
    clean.update(VECTORIZER_KAFKA_BOOTSTRAP=kafka_bootstrap, VECTORIZER_TOPIC=f"t.sec_{uuid.uuid4().hex[:10]}",
                 VECTORIZER_DATA_DIR=str(tmp / "data"), **env)
    code = ("import logging, sys\n"
            "logging.basicConfig(level=logging.DEBUG, format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
            "sys.argv = ['vectorizer', 'serve']\n"
            "from vectorizer.cli.main import main\n"
            "main()\n")
    command = [sys.executable, "-c", code] if debug else [sys.executable, "-m", "vectorizer", "serve"]
    with open(tmp / log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=clean, stdout=out, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, key: str | None, log: Path) -> None:
    headers = {"api-key": key} if key else {}

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{port}/ready", headers=headers, timeout=5).status_code == 200
        return False

    wait_until(ready, 90, interval=0.1, message="the server's /ready")
    assert proc.poll() is None, f"the server exited: {log.read_text(errors='replace')[-3000:]}"


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError("the server did not stop on SIGTERM") from None


def test_listens_on_loopback_only_by_default(tmp_path: Path, kafka_bootstrap: str) -> None:
    defaults = Settings()
    assert defaults.http == "127.0.0.1:15002" and defaults.http_host == "127.0.0.1"
    assert Settings.load(environ={}).http_host == "127.0.0.1"
    assert Settings.load(environ={}).grpc == "127.0.0.1:6334"  # Qdrant's gRPC port, on loopback
    assert defaults.kafka_bootstrap.startswith("127.0.0.1:")
    node = NodeSpec(port=free_port(), controller_port=free_port())
    broker = LocalBroker(tmp_path / "broker", defaults.cache_dir, node)
    broker.home.mkdir(parents=True)
    properties = dict(line.split("=", 1) for line in broker._render_properties().read_text().splitlines()  # noqa: SLF001 - the properties file the launcher writes
                      if "=" in line and not line.startswith("#"))
    for name in ("listeners", "advertised.listeners"):
        for listener in properties[name].split(","):
            assert listener.split("://", 1)[1].rpartition(":")[0] == "127.0.0.1", (name, listener)

    port = free_port()
    proc = _serve(tmp_path, kafka_bootstrap, {"VECTORIZER_HTTP": f":{port}"})  # the default host, another port
    try:
        _wait_ready(proc, port, None, tmp_path / "serve.log")
        sockets = psutil.Process(proc.pid).net_connections(kind="inet")
        listening = [s for s in sockets if s.status == psutil.CONN_LISTEN
                     or (s.type == socket.SOCK_DGRAM and not s.raddr)]
        assert port in [s.laddr.port for s in listening], sockets
        # gRPC's listener is an IPv6 socket bound to the IPv4 loopback, as ::ffff:127.0.0.1.
        beyond = [s for s in listening if s.laddr.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
        assert not beyond, beyond
    finally:
        assert _stop(proc) == 0, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
    assert "SECURITY WARNING" not in (tmp_path / "serve.log").read_text(errors="replace")
    record("security", "test_listens_on_loopback_only_by_default", listening_sockets=len(listening), non_loopback=0)


@contextlib.contextmanager
def _postgres_login(password: str) -> Iterator[str | None]:
    """A catalog URL for a fresh role (with ``password``) and schema, or ``None`` without a Postgres."""
    import sqlalchemy as sa

    admin_url = os.environ.get("VECTORIZER_TEST_POSTGRES") or LOCAL_PG
    engine = sa.create_engine(admin_url, connect_args={"connect_timeout": 3})
    role = f"vz_logs_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
            conn.execute(sa.text(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"'))
    except sa.exc.SQLAlchemyError as exc:  # no Postgres here, or no right to add a role: SQLite and the keys only
        engine.dispose()
        if IN_CI:
            pytest.fail(f"CI has a Postgres: a login role for the secrets-in-logs test must be possible ({exc})")
        yield None
        return
    url = sa.engine.make_url(admin_url).set(username=role, password=password).update_query_dict(
        {"options": f"-csearch_path={role}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{role}" CASCADE'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        engine.dispose()


def _scan(text: str, secrets_: dict[str, str]) -> list[str]:
    return [name for name, value in secrets_.items() if value in text]


def test_no_secrets_in_logs(tmp_path: Path, kafka_bootstrap: str) -> None:
    password = f"pw{secrets.token_hex(12)}"
    hidden = {"api key": KEY, "read-only key": READ_ONLY_KEY, "wrong key": WRONG_KEY, "catalog password": password}
    lines = 0
    with _postgres_login(password) as catalog_url:
        port = free_port()
        env = {"VECTORIZER_HTTP": f"127.0.0.1:{port}", "VECTORIZER_API_KEY": KEY,
               "VECTORIZER_READ_ONLY_API_KEY": READ_ONLY_KEY, "VECTORIZER_CATALOG_URL": catalog_url or ""}
        proc = _serve(tmp_path, kafka_bootstrap, env, debug=True)
        try:
            _wait_ready(proc, port, READ_ONLY_KEY, tmp_path / "serve.log")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                full, bearer = {"api-key": KEY}, {"authorization": f"Bearer {KEY}"}
                read_only, wrong = {"api-key": READ_ONLY_KEY}, {"api-key": WRONG_KEY}
                c = "/collections/logs"
                answers = [
                    http.put(c, headers=full, json={"vectors": {"size": 2, "distance": "Dot"}}).status_code,
                    http.put(f"{c}/points", headers=bearer, params={"wait": "true"}, json={"points": STORED}
                             ).status_code,
                    http.post(f"{c}/points/query", headers=read_only, json={"query": [1, 0]}).status_code,
                    http.get("/collections", headers=wrong).status_code,
                    http.get("/collections", headers={"authorization": f"Bearer {WRONG_KEY}"}).status_code,
                    http.put(f"{c}/points", headers=read_only, json={"points": STORED}).status_code,
                    http.put(f"{c}/points", headers=full, json={"points": [{"id": 1, "vector": [1]}]}).status_code,
                    http.get("/collections/missing", headers=full).status_code,
                    http.post(f"{c}/snapshots", headers=full).status_code,
                    http.get("/metrics", headers=read_only).status_code,
                ]
                assert answers == [200, 200, 200, 401, 401, 403, 400, 404, 200, 200], answers
        finally:
            assert _stop(proc) == 0, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
        text = (tmp_path / "serve.log").read_text(errors="replace")
        assert "serving http://127.0.0.1" in text and "DEBUG" in text, text[-3000:]
        if catalog_url is not None:  # the catalog URL is logged, its password masked
            assert ":***@" in text, text[-3000:]
        assert _scan(text, hidden) == [], _scan(text, hidden)
        lines += len(text.splitlines())
    # A catalog that cannot be reached: the server stays up, not ready, and retries; the error it
    # logs names the catalog, without the password.
    port = free_port()
    env = {"VECTORIZER_HTTP": f"127.0.0.1:{port}", "VECTORIZER_API_KEY": KEY,
           "VECTORIZER_CATALOG_URL": f"postgresql+psycopg://vz:{password}@127.0.0.1:{free_port()}/vz"}
    proc = _serve(tmp_path, kafka_bootstrap, env, debug=True, log="unreachable.log")
    unreachable = tmp_path / "unreachable.log"
    try:
        wait_until(lambda: proc.poll() is not None or "recovering the projection failed" in
                   unreachable.read_text(errors="replace"), 90, interval=0.2, message="the catalog retry logged")
        assert proc.poll() is None, unreachable.read_text(errors="replace")[-3000:]
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", headers={"api-key": KEY}, timeout=10)
        assert ready.status_code == 503, ready.text
    finally:
        assert _stop(proc) == 0, unreachable.read_text(errors="replace")[-3000:]
    text = unreachable.read_text(errors="replace")
    assert "catalog" in text and "127.0.0.1" in text, text[-3000:]
    assert _scan(text, hidden) == [], _scan(text, hidden)
    lines += len(text.splitlines())
    record("security", "test_no_secrets_in_logs", log_lines_scanned=lines, secrets_found=0,
           postgres_catalog=catalog_url is not None)
