"""What the operations routes (``vectorizer.api.routes.ops``) keep on one server: the last verify,
the newest dead letters read, and which long operation runs."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from consumers import dlq
from infra.settings import Settings
from vectorizer.api.errors import Busy

#: Dead letters are read again from the DLQ topic at most this often, unless this server
#: dead-lettered a record since (the dashboard polls; each read opens a Kafka consumer).
LETTERS_FRESH_SECONDS = 30.0


class Operations:
    """The operations' state on one server: the last verify, the cached dead letters, what runs."""

    def __init__(self) -> None:
        self.last_verify: dict[str, Any] | None = None
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._letters: tuple[float, int, int, list[dict[str, Any]], bool] | None = None

    @contextlib.contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Run ``what`` (a verify, a workspace sync) while no other one runs here; else :class:`Busy` (409)."""
        with self._lock:
            if what in self._running:
                raise Busy(f"a {what} is already running on this server; retry when it is done")
            self._running.add(what)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(what)

    def letters(self, settings: Settings, count: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The newest ``limit`` letters, and whether there are older ones. Read again from the DLQ topic
        when the cached read is older than :data:`LETTERS_FRESH_SECONDS` or ``count`` (the letters this
        server sent) changed since."""
        cached = self._letters
        if (cached is not None and cached[1] == count and cached[2] >= limit
                and time.monotonic() - cached[0] < LETTERS_FRESH_SECONDS):
            return cached[3][:limit], cached[4] or len(cached[3]) > limit
        stored, older = dlq.recent_letters(settings, limit)
        rows = [letter.row() for letter in stored]
        self._letters = (time.monotonic(), count, limit, rows, older)
        return rows, older
