"""A producer killed (kill -9) inside an open Kafka transaction, against the real broker.

- none of its records is ever visible: no count, no retrieve includes them;
- it holds every ``read_committed`` reader of its partition (the last stable offset) until
  the broker aborts it: a later write by another producer becomes visible only then, within
  the configured ``transaction_timeout`` plus a margin (a deadline, not a performance figure:
  with Kafka's or this project's default timeout the write would miss it);
- while held, ``/metrics`` and ``vectorizer --json status`` name the held-back offset; after
  the abort they report nothing held.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from consumers import stall
from infra.settings import Settings
from tests.api.conftest import Running, serving
from tests.helpers import run_cli, wait_until

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 12.0   # the doomed producer's transaction timeout, seconds (the default is 30)
MARGIN = 10.0    # the broker's 1 s abort check, the projector's poll, a loaded CI machine
DOOMED = [f"doomed-{i}" for i in range(50)]


def _metric(server: Running, name: str) -> float:
    text = server.http.get("/metrics").text
    found = re.search(rf'^{name}{{partition="0"}} ([0-9.e+-]+)$', text, re.M)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


def _status(settings: Settings) -> dict[str, Any]:
    code, output = run_cli(settings, "--json", "status")
    assert code == 0, output
    return json.loads(output.strip().splitlines()[-1])


def _count(http: httpx.Client) -> int:
    return int(http.post("/collections/t/points/count", json={"exact": True}).json()["result"]["count"])


def _start_doomed(settings: Settings) -> tuple[subprocess.Popen[str], int]:
    """A producer process inside an open transaction (its records acknowledged, no commit);
    returns it and the offset of its first record."""
    script = textwrap.dedent(f"""
        import sys
        from producers import VectorProducer
        from infra.settings import Settings
        s = Settings(kafka_bootstrap={settings.kafka_bootstrap!r}, topic={settings.topic!r},
                     transaction_timeout={TIMEOUT!r})   # the setting, no explicit constructor value
        p = VectorProducer(s, producer_id="doomed-{uuid.uuid4().hex[:8]}")
        with p.transaction():
            first = p.upsert("t", {DOOMED[:25]!r}, [[1, 0, 0, 0]] * 25)
            p.upsert("t", {DOOMED[25:]!r}, [[0, 1, 0, 0]] * 25)
            print(first.offset, flush=True)
            sys.stdin.read()  # inside the transaction until killed
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready:
        proc.kill()
        raise AssertionError("the doomed producer did not reach its open transaction within 60s")
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise AssertionError(f"the doomed producer failed: {line!r} {proc.communicate()[1]}")
    return proc, int(line)


def test_producer_killed_in_open_transaction_is_never_visible_and_stalls_readers_boundedly(
        settings: Settings) -> None:
    with serving(settings) as server:
        assert server.http.put("/collections/t", json={"vectors": {"size": 4, "distance": "Dot"}}).is_success
        r = server.http.put("/collections/t/points", params={"wait": "true"},
                            json={"points": [{"id": "before", "vector": [1, 1, 1, 1]}]})
        assert r.status_code == 200, r.text

        # A reader polling count and the doomed ids for the whole test.
        seen: list[tuple[int, int]] = []  # (count, doomed points retrieved)
        done = threading.Event()

        def read() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                while not done.is_set():
                    got = http.post("/collections/t/points", json={"ids": DOOMED}).json()["result"]
                    seen.append((_count(http), len(got)))

        reader = threading.Thread(target=read, name="reader", daemon=True)
        reader.start()

        try:
            proc, first = _start_doomed(settings)
            proc.kill()  # SIGKILL: no abort, no close; only the broker's timeout ends the transaction
            assert proc.wait(30) == -9
            killed = time.monotonic()
            later = server.http.put("/collections/t/points", params={"wait": "false"},
                                    json={"points": [{"id": "after", "vector": [0, 0, 1, 0]}]})
            assert later.status_code == 200, later.text

            # Held: the last stable offset stays at the doomed transaction's first record.
            def held_in_metrics() -> bool:
                return _metric(server, "vectorizer_open_transaction_records") > 0 and \
                    _metric(server, "vectorizer_lso_held_seconds") > 0
            wait_until(held_in_metrics, TIMEOUT, interval=0.1, message="/metrics reporting the held LSO")
            status = _status(settings)
            assert status["lso_held"]["0"]["last_stable_offset"] == first, status
            assert status["lso_held"]["0"]["open_transaction_records"] >= 3, status  # 2 doomed + the later write
            code, human = run_cli(settings, "status")
            assert code == 0 and f"readers held at the last stable offset {first} " in human, human
            # A count taken while the LSO is held before and after it cannot include the later write.
            before = stall.read(settings, [0])
            count = _count(server.http)
            held_after = stall.read(settings, [0])
            assert [h.stable if h else None for h in (before.get(0), held_after.get(0))] == [first, first], \
                "the hold ended before the count was checked (a very slow machine?)"
            assert count == 1, "a write behind the open transaction became visible before the abort"

            # The abort: the later write becomes visible, within the configured timeout plus a margin.
            wait_until(lambda: _count(server.http) == 2, TIMEOUT + MARGIN - (time.monotonic() - killed),
                       interval=0.1, message="the later write, after the broker aborted the transaction")
            assert server.http.post("/collections/t/points", json={"ids": ["after"]}).json()["result"]
            wait_until(lambda: _metric(server, "vectorizer_open_transaction_records") == 0
                       and _metric(server, "vectorizer_lso_held_seconds") == 0, 10, interval=0.1,
                       message="/metrics reporting nothing held after the abort")
            assert _status(settings)["lso_held"] == {}
        finally:
            done.set()
            reader.join(30)
        assert seen, "the reader read"
        assert all(count <= 2 and doomed == 0 for count, doomed in seen), sorted(set(seen))
        assert server.http.post("/collections/t/points", json={"ids": DOOMED}).json()["result"] == []
