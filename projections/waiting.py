"""Reads that must not wait: a caller that cannot afford to block (the HTTP server's event loop,
answering a read inline) marks its thread with :func:`never_wait`; a lock that would have to wait
for a writer, or a query that would queue behind another ``ef``, raises :class:`WouldBlock` there
instead, before taking anything. The caller then runs the same read where waiting is fine (a
worker thread). Everywhere else locks wait as always.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_marked = threading.local()


class WouldBlock(Exception):
    """Raised instead of waiting, in a thread marked by :func:`never_wait`; nothing was taken."""


@contextmanager
def never_wait() -> Iterator[None]:
    """Within the block, waits in this thread raise :class:`WouldBlock`."""
    before = getattr(_marked, "on", False)
    _marked.on = True
    try:
        yield
    finally:
        _marked.on = before


def before_waiting() -> None:
    """Call where a wait is about to start: raises :class:`WouldBlock` in a :func:`never_wait` thread."""
    if getattr(_marked, "on", False):
        raise WouldBlock
