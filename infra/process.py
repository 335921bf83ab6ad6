"""What every long-running process sets up the same way: its log format, its stop signals,
and what of a database URL may be logged."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """One line per record, with time, level and logger; kafka-python's chatter above warnings only."""
    logging.basicConfig(level=level, format=_FORMAT)
    logging.getLogger("kafka").setLevel(logging.WARNING)


def on_stop(callback: Callable[[], object], signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
            ) -> None:
    """Call ``callback`` (from the main thread, as Python delivers signals) on SIGINT/SIGTERM."""
    for sig in signals:
        signal.signal(sig, lambda *_: callback())


def masked_url(url: str) -> str:
    """A database URL fit for a log or a message: the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy reads: keep only what follows the credentials
        return url.rpartition("@")[2]
