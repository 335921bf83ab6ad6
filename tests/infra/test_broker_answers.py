"""``broker_answers`` keeps to its timeout whatever is at the address (the client's defaults wait 30 s)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from infra.kafka.launcher import broker_answers
from tests.conftest import free_port

# The contract is "about ``timeout``"; the bound leaves room for a loaded machine, far below 30 s.
BOUND = 8.0


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A port that accepts TCP connections and never says anything (not a Kafka broker)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _timed(bootstrap: str, timeout: float) -> tuple[bool, float]:
    start = time.monotonic()
    return broker_answers(bootstrap, timeout=timeout), time.monotonic() - start


def test_nothing_listening_is_answered_no_within_the_timeout() -> None:
    answered, seconds = _timed(f"127.0.0.1:{free_port()}", 1.0)
    assert answered is False and seconds < BOUND, seconds


def test_a_listener_that_never_answers_is_answered_no_within_the_timeout(silent_listener: str) -> None:
    answered, seconds = _timed(silent_listener, 1.0)
    assert answered is False and seconds < BOUND, seconds


def test_the_real_broker_answers(kafka_bootstrap: str) -> None:
    assert broker_answers(kafka_bootstrap, timeout=3.0) is True
    assert broker_answers(f"127.0.0.1:{free_port()},{kafka_bootstrap}", timeout=3.0) is True
