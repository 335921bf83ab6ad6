"""A committed transaction becomes visible all at once (issue 14, item 1), against the real broker.

A reader thread polls ``count`` and retrieves probe points over HTTP while a producer commits
transactions of 2,000 to 20,000 points; every answer it gets must be a state between two
whole transactions: a count of the points of whole transactions only, and of each transaction's
probes all or none. The same for a transaction across two partitions, and for one large HTTP
upsert split into several events. Logs written before transactions were framed (no headers)
replay to the same state; a transaction too large for a projector's memory is refused at the
producer and nothing of it is visible.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from kafka import KafkaProducer

from consumers.replay import replay_into
from infra.kafka.topics import ensure_topics, partition_for
from infra.settings import Settings
from producers import VectorProducer
from producers.errors import PublishFailed, TransactionTooLarge
from projections.catalog.store import Catalog
from schemas import events as ev
from schemas.codec import encode
from tests.api.conftest import Running, serving
from tests.helpers import running_projector, wait_until

DIM = 4
CALL = 1_000  # points per upsert call inside a transaction: a 20,000-point transaction is 20 events


def _create(server: Running, name: str) -> None:
    r = server.http.put(f"/collections/{name}", json={"vectors": {"size": DIM, "distance": "Dot"},
                                                      "hnsw_config": {"m": 4, "ef_construct": 8}})
    assert r.status_code == 200, r.text
    wait_until(lambda: server.http.get(f"/collections/{name}").status_code == 200, 30, message=name)


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32)


class Reader:
    """Polls count and probes of several collections over HTTP until stopped; keeps every answer."""

    def __init__(self, server: Running, collections: list[str], probes: list[int]) -> None:
        self.url, self.collections, self.probes = server.url, collections, probes
        self.seen: list[tuple[tuple[int, ...], tuple[frozenset[int], ...]]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def reads(self) -> int:
        return len(self.seen)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self._stop.is_set():
                try:
                    counts, found = [], []
                    for name in self.collections:
                        r = http.post(f"/collections/{name}/points/count", json={"exact": True})
                        counts.append(int(r.json()["result"]["count"]))
                        got = http.post(f"/collections/{name}/points", json={"ids": self.probes})
                        found.append(frozenset(int(p["id"]) for p in got.json()["result"]))
                    self.seen.append((tuple(counts), tuple(found)))
                except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    return


def _partial(reader: Reader, whole: list[int], allowed: list[frozenset[int]]) -> list[Any]:
    """The reads of one collection that saw part of a transaction: a count that is not the size
    of whole transactions, probes that are not all-or-none per transaction, or probes (read
    after the count) showing an earlier state than the count did."""
    bad = []
    for (count,), (found,) in reader.seen:
        if count not in whole or found not in allowed or allowed.index(found) < whole.index(count):
            bad.append((count, sorted(found)))
    return bad


def _commit(producer: VectorProducer, name: str, first: int, n: int, seed: int) -> Any:
    with producer.transaction():
        tokens = [producer.upsert(name, list(range(start, min(start + CALL, first + n))),
                                  _vectors(min(CALL, first + n - start), seed + start))
                  for start in range(first, first + n, CALL)]
    return tokens[-1]


def test_a_reader_never_sees_part_of_a_committed_transaction(settings: Settings) -> None:
    sizes = [2_000, 5_000, 20_000, 3_000, 10_000]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    # Each transaction's first and last point: a reader sees both of them or neither.
    probes = [p for s, n in zip(starts, sizes, strict=True) for p in (s, s + n - 1)]
    with serving(settings) as server:
        _create(server, "tx")
        with Reader(server, ["tx"], probes) as reader, VectorProducer(settings) as producer:
            wait_until(lambda: reader.reads() > 5, 30, message="the reader's first reads")
            marks = []
            for i, (start, n) in enumerate(zip(starts, sizes, strict=True)):
                before = reader.reads()
                token = _commit(producer, "tx", start, n, seed=i)
                server.replica.projector.wait_for(token.partition, token.offset, 120)

                def more_reads(before: int = before) -> bool:
                    return reader.reads() > before + 100

                wait_until(more_reads, 60, message="reads after the commit")
                marks.append(reader.reads())
        assert not reader.errors, reader.errors
        stats = server.replica.projector.stats
    whole = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    allowed = [frozenset(probes[:2 * i]) for i in range(len(sizes) + 1)]
    partial = _partial(reader, whole, allowed)
    assert not partial, f"{len(partial)} of {len(reader.seen)} reads saw part of a transaction: {partial[:5]}"
    counts = [count for (count,), _ in reader.seen]
    assert counts == sorted(counts) and counts[-1] == sum(sizes)  # and never back in time
    assert len(reader.seen) >= 100 * len(sizes), f"only {len(reader.seen)} reads"
    # The reader saw every whole state in between, so it did watch the commits (not only before/after).
    assert set(counts) >= set(whole[1:]), sorted(set(counts))
    assert stats.dead_letters == 0  # end records are framing, never letters
    assert stats.units_applied >= len(sizes)


def _two_partition_names() -> tuple[str, str]:
    names = [f"c{i}" for i in range(50)]
    a = next(n for n in names if partition_for(n, 2) == 0)
    b = next(n for n in names if partition_for(n, 2) == 1)
    return a, b


def test_a_transaction_across_two_partitions_is_visible_on_both_at_once(settings: Settings) -> None:
    settings = settings.replace(partitions=2)
    a, b = _two_partition_names()
    rounds = [3_000, 6_000, 2_000]
    with serving(settings) as server:
        _create(server, a)
        _create(server, b)
        # a, b, then a again: b's count must lie between the two counts of a (one HTTP request
        # each, so a transaction may land between them, but never show on b only)
        with Reader(server, [a, b, a], [0]) as reader, VectorProducer(settings) as producer:
            wait_until(lambda: reader.reads() > 5, 30, message="the reader's first reads")
            total = 0
            for i, n in enumerate(rounds):
                before = reader.reads()
                with producer.transaction():
                    for start in range(total, total + n, CALL):
                        ids = list(range(start, min(start + CALL, total + n)))
                        producer.upsert(a, ids, _vectors(len(ids), i))
                        last = producer.upsert(b, ids, _vectors(len(ids), i + 100))
                total += n
                server.replica.projector.wait_for(last.partition, last.offset, 120)

                def more_reads(before: int = before) -> bool:
                    return reader.reads() > before + 30

                wait_until(more_reads, 60, message="reads after the commit")
        assert not reader.errors, reader.errors
    uneven = [counts for counts, _ in reader.seen if not counts[0] <= counts[1] <= counts[2]]
    assert not uneven, f"{len(uneven)} of {len(reader.seen)} reads saw one partition's part only: {uneven[:5]}"
    assert reader.seen[-1][0] == (total, total, total)
    whole = {sum(rounds[:i]) for i in range(len(rounds) + 1)}
    assert {c for counts, _ in reader.seen for c in counts} <= whole


def test_one_large_http_upsert_split_into_several_events_is_visible_at_once(settings: Settings) -> None:
    settings = settings.replace(max_message_bytes=128 * 1024)  # 12,000 points of 4-d: well over 10 events
    n = 12_000
    with serving(settings) as server:
        _create(server, "big")
        with Reader(server, ["big"], [0, n - 1, n, 2 * n - 1]) as reader:
            wait_until(lambda: reader.reads() > 5, 30, message="the reader's first reads")
            for first in (0, n):
                points = [{"id": first + i, "vector": v, "payload": {"i": i}}
                          for i, v in enumerate(_vectors(n, first).tolist())]
                before = reader.reads()
                r = server.http.put("/collections/big/points", params={"wait": "true"}, json={"points": points})
                assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
                got = server.http.post("/collections/big/points/count", json={"exact": True}).json()["result"]
                assert got["count"] == first + n  # wait=true answered: the whole upsert is visible

                def more_reads(before: int = before) -> bool:
                    return reader.reads() > before + 20

                wait_until(more_reads, 60, message="reads after the upsert")
        assert not reader.errors, reader.errors
        events = server.replica.projector.stats.events_applied
    assert events >= 2 * 10, f"the upserts were not split into several events ({events} events)"
    partial = _partial(reader, [0, n, 2 * n], [frozenset(), frozenset({0, n - 1}), frozenset({0, n - 1, n, 2 * n - 1})])
    assert not partial, f"{len(partial)} of {len(reader.seen)} reads saw part of one upsert: {partial[:5]}"


def test_a_log_written_before_framing_replays_as_before(settings: Settings, catalog_url: str) -> None:
    """Records without the framing headers — what every producer wrote before it existed, in
    Kafka transactions and out of them — are applied one by one as before; framed ones after
    them on the same topic as units; the state is the same as applying every event in order."""
    name = "old"
    ensure_topics(settings)
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                        transactional_id=f"previous-version-{settings.topic}")
    raw.init_transactions()
    meta = lambda: ev.EventMeta.new(name, "previous-version")  # noqa: E731
    raw.begin_transaction()
    raw.send(settings.topic, key=name.encode(), value=encode(ev.CollectionCreated(
        meta(), DIM, "ip", 4, 8, 16, "dynamic", None)))
    for start in range(0, 3_000, CALL):
        ids = tuple(range(start, start + CALL))
        raw.send(settings.topic, key=name.encode(),
                 value=encode(ev.VectorsUpserted(meta(), ids, _vectors(CALL, start), (None,) * CALL)))
    raw.commit_transaction()
    raw.close()
    plain = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    plain.send(settings.topic, key=name.encode(), value=encode(ev.VectorsDeleted(meta(), (0, 1, 2)))).get(30)
    plain.close()
    with VectorProducer(settings) as producer:
        with producer.transaction():
            producer.upsert(name, list(range(3_000, 4_000)), _vectors(1_000, 9))
            producer.delete(name, [3_000])
        last = producer.upsert(name, [5_000], _vectors(1, 10))
    with running_projector(settings, Catalog(catalog_url, settings.projection, settings.topic)) as proj:
        proj.wait_for(last.partition, last.offset, 60)
        coll = proj.state.get(name)
        assert coll is not None and coll.count() == 3_000 - 3 + 1_000 - 1 + 1
        assert 0 not in coll.label_of and 3_000 not in coll.label_of and 2_999 in coll.label_of
        assert proj.stats.dead_letters == 0
        assert proj.stats.units_applied >= 1  # the framed transaction, as one unit
        served = {pid: coll.vector(pid).tolist() for pid in coll.label_of}
    replayed = replay_into(settings).state.get(name)  # what verify compares against
    assert replayed is not None
    assert {pid: replayed.vector(pid).tolist() for pid in replayed.label_of} == served  # type: ignore[union-attr]


def test_a_transaction_past_the_limit_is_refused_at_the_producer_and_never_visible(settings: Settings) -> None:
    settings = settings.replace(max_message_bytes=128 * 1024, max_transaction_bytes=512 * 1024)
    with VectorProducer(settings) as producer:
        producer.create_collection("lim", DIM, "ip")
        producer.upsert("lim", [0], _vectors(1, 0))
        with pytest.raises(TransactionTooLarge, match="max_transaction_bytes"), producer.transaction():
            for start in range(1, 100_001, CALL):  # ~25 bytes a point: past 512 KiB by the 25th call
                producer.upsert("lim", list(range(start, start + CALL)), _vectors(CALL, start))
        # Caught inside the block, the refusal still aborts the transaction: it never commits half.
        with pytest.raises(PublishFailed, match="aborted, not committed"), producer.transaction():
            producer.upsert("lim", [300_000], _vectors(1, 3))
            with pytest.raises(TransactionTooLarge):  # caught: the block goes on and ends normally
                producer.upsert("lim", list(range(300_001, 330_001)), _vectors(30_000, 4))
        with producer.transaction():  # a transaction within the limit still commits
            producer.upsert("lim", list(range(100_000, 101_000)), _vectors(1_000, 1))
        # One call past the limit outside transaction(): several transactions, each whole; all applied.
        bulk = producer.upsert("lim", list(range(400_000, 430_000)), _vectors(30_000, 5))
        assert len(bulk.records) > 10
        last = producer.upsert("lim", [200_000], _vectors(1, 2))
    with running_projector(settings) as proj:
        proj.wait_for(last.partition, last.offset, 60)
        coll = proj.state.get("lim")
        assert coll is not None and coll.count() == 1 + 1_000 + 30_000 + 1
        assert 1 not in coll.label_of and 300_000 not in coll.label_of  # nothing of the refused transactions
        assert proj.stats.units_split == 0


def test_a_framed_record_whose_end_never_comes_does_not_hold_the_partition_forever(settings: Settings) -> None:
    """A hand-made framed record without an end record (not something the producer library
    writes): once the partition was read to its end and the part is still missing, the
    projector stops waiting and applies what it holds, one record at a time, counting it."""
    with VectorProducer(settings) as producer:
        producer.create_collection("h", DIM, "ip")
        ensure_topics(settings)
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    meta = ev.EventMeta.new("h", "hand-made")
    # an end record naming a partition the topic does not have: not waited for
    raw.send(settings.topic, key=b"h", value=encode(ev.VectorsUpserted(meta, (3,), _vectors(1, 3), (None,))),
             headers=[("vz-txn", b"e" * 32)]).get(30)
    raw.send(settings.topic, value=b"", headers=[("vz-txn-end", b"e" * 32), ("vz-txn-parts", b"0,7")]).get(30)
    raw.send(settings.topic, key=b"h", value=encode(ev.VectorsUpserted(meta, (1,), _vectors(1, 1), (None,))),
             headers=[("vz-txn", b"f" * 32)]).get(30)
    last = raw.send(settings.topic, key=b"h", value=encode(ev.VectorsUpserted(
        ev.EventMeta.new("h", "hand-made"), (2,), _vectors(1, 2), (None,)))).get(30)
    raw.close()
    with running_projector(settings) as proj:
        proj.wait_for(last.partition, last.offset, 60)  # 10 s past the log end, not forever
        coll = proj.state.get("h")
        assert coll is not None and sorted(coll.label_of) == [1, 2, 3]
        assert proj.stats.units_split == 1 and proj.stats.units_applied >= 1 and proj.stats.dead_letters == 0


def test_transactions_of_two_producers_overlapping_without_a_gap_still_become_visible(settings: Settings) -> None:
    """Two producers whose transactions on one partition always overlap (one opens before the
    other commits) leave no point where none is open: the projector does not hold them for ever;
    after its bound it applies them in log order (counted) and readers see them while the
    producers go on."""
    with running_projector(settings) as proj, VectorProducer(settings) as a, VectorProducer(settings) as b:
        a.create_collection("o", DIM, "ip")
        open_a = a.transaction()
        open_a.__enter__()
        a.upsert("o", [0], _vectors(1, 0))
        deadline, n, seen_while_writing = time.monotonic() + 60.0, 1, 0
        writers = [(a, open_a), (b, None)]
        while not seen_while_writing and time.monotonic() < deadline:  # until something shows, overlapping
            for i, (producer, ctx) in enumerate(writers):  # open the other's next, then commit this one's
                other, other_ctx = writers[1 - i]
                if other_ctx is None:
                    other_ctx = other.transaction()
                    other_ctx.__enter__()
                    other.upsert("o", [n], _vectors(1, n))
                    n += 1
                    writers[1 - i] = (other, other_ctx)
                if ctx is not None:
                    ctx.__exit__(None, None, None)
                    writers[i] = (producer, None)
            coll = proj.state.get("o")
            seen_while_writing = max(seen_while_writing, 0 if coll is None else coll.count())
        for _producer, ctx in writers:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        last = b.upsert("o", [n], _vectors(1, n))
        proj.wait_for(last.partition, last.offset, 60)
        coll = proj.state.get("o")
        assert coll is not None and coll.count() == n + 1
        assert proj.stats.units_split >= 1
    assert seen_while_writing > 0, "nothing became visible while the overlapping transactions went on"
