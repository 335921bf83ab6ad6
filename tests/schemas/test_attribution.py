"""Attribution headers and request ids, in memory (the broker round trip is tests/api/test_audit.py)."""

from __future__ import annotations

import datetime as dt

import pytest
import typer

from schemas.attribution import MAX_BYTES, Attribution, attribution_of, headers
from vectorizer.api.caller import CALLER
from vectorizer.api.request_ids import REQUEST_ID, attribution, request_id
from vectorizer.cli.audit import parse_since


def test_headers_round_trip_and_older_records_read_as_unknown() -> None:
    assert attribution_of(headers("jwt:alice", "r-1")) == Attribution("jwt:alice", "r-1")
    assert attribution_of(headers("api-key", None)) == Attribution("api-key", None)
    assert headers(None, None) == []
    assert attribution_of(None) == attribution_of([]) == Attribution(None, None)
    # framing headers beside them are left alone; a header without a value is no value
    assert attribution_of([("vz-txn", b"ab"), ("vz-caller", b"bob"), ("vz-request-id", None)]) == Attribution("bob")


def test_a_long_caller_is_cut_on_a_character_boundary() -> None:
    (_, raw), = headers("é" * MAX_BYTES, None)
    assert len(raw) <= MAX_BYTES and raw.decode() == "é" * (MAX_BYTES // 2)


@pytest.mark.parametrize(("given", "kept"), [(b"abc-123", True), (b"x" * 128, True), (b"x" * 129, False),
                                             (b"", False), (b"has space", False), (b"tab\t", False),
                                             ("é".encode(), False), (None, False)])
def test_request_ids_bounded_and_printable_else_new(given: bytes | None, kept: bool) -> None:
    rid = request_id(given)
    if kept:
        assert given is not None and rid == given.decode()
    else:
        assert len(rid) == 32 and int(rid, 16) >= 0 and rid != request_id(given)


def test_the_servers_attribution_reads_the_request_being_served() -> None:
    """Two identities one after the other (as AuthMiddleware and the request-id layer set them)."""
    assert attribution() == Attribution(None, None)  # outside a request: the producer's own caller
    for caller, rid in (("jwt:alice", "r-a"), ("jwt:bob", "r-b")):
        c, r = CALLER.set(caller), REQUEST_ID.set(rid)
        try:
            assert attribution() == Attribution(caller, rid)
            assert attribution_of(headers(attribution().caller, attribution().request_id)) == Attribution(caller, rid)
        finally:
            CALLER.reset(c)
            REQUEST_ID.reset(r)


def test_since_reads_iso_times_and_spans_ago() -> None:
    assert parse_since("2025-01-31T12:00:00Z") == int(dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC).timestamp() * 1000)
    assert parse_since("2025-01-31T12:00:00+01:00") == parse_since("2025-01-31T11:00:00Z")
    naive = dt.datetime(2025, 1, 31, 12).astimezone()
    assert parse_since("2025-01-31T12:00:00") == int(naive.timestamp() * 1000)
    assert parse_since("2h", now=10_000.0) == (10_000 - 7200) * 1000
    assert parse_since("90s", now=100.0) == 10_000
    with pytest.raises(typer.Exit):
        parse_since("yesterday")
