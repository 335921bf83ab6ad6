"""A projection's verdict on a write, read from its catalog: for producers outside the server.

The projector writes, in one transaction per batch, its tracking row and a row for every
record it refused (:class:`~projections.changes.Rejection`), and marks from which offset of
each partition that record is complete. So once the tracking row is at or past a write's
last offset, each of its records at or past the mark is either in the rejections table or
applied, and that answer never changes: it survives restarts of the projector.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from infra.settings import Settings
from producers.errors import VerdictUnknown
from projections.catalog.store import Catalog
from projections.changes import Rejection
from projections.errors import CatalogUnavailable

_POLL_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)  # growing intervals between reads of the tracking row


class CatalogVerdicts:
    """Waits on the catalog of ``settings.projection`` (the one ``vectorizer serve`` with the same
    settings writes). Never creates a database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._catalog: Catalog | None = None

    def wait(self, partition: int, offsets: Sequence[int], timeout: float | None) -> list[Rejection] | None:
        """The rejections among ``offsets`` once the projection applied the last of them (empty: all
        applied); ``None`` if it had not within ``timeout`` seconds (``None``: as long as it takes).

        Raises :class:`VerdictUnknown` at once when there is no catalog where the settings point
        (waiting could only end in a timeout), or when the catalog holds no verdicts that old.
        A catalog that is unreachable (a database server down) is retried until the deadline.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last = max(offsets)
        catalog = self._open()
        for attempt in itertools.count():
            try:
                if catalog.positions().get(partition, -1) >= last:
                    start = catalog.verdicts_start(partition)
                    if start is None or min(offsets) < start:
                        raise VerdictUnknown(f"the catalog at {catalog.safe_url} records verdicts of partition "
                                             f"{partition} only from offset {start}; {partition}:{min(offsets)} "
                                             "is older")
                    return catalog.rejections(partition, list(offsets))
            except CatalogUnavailable:
                pass  # the database is down or busy: retried until the deadline
            pause = _POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)]
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                pause = min(pause, left)
            time.sleep(pause)
        raise AssertionError("unreachable")

    def _open(self) -> Catalog:
        if self._catalog is None:
            try:
                self._catalog = Catalog.of(self.settings, create=False)
            except CatalogUnavailable as exc:
                raise VerdictUnknown(f"no verdict can be read: {exc} (point the producer's settings at the "
                                     "server's data directory or catalog URL)") from None
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
