"""Several serving processes on the same ports, so reads use every core (``VECTORIZER_WORKERS``).

One Python process answers on one core at a time: the HTTP framework, JSON and the routes hold the
GIL (hnswlib releases it only inside its search). With ``workers = N``, ``vectorizer serve`` starts
N - 1 more processes (``python -m vectorizer serve``), each a whole read replica: its own projector
and projection in ``<data_dir>/workers/<i>`` (its own consumer group, snapshots and SQLite
catalog), the whole log applied, and the same HTTP and gRPC ports, shared with ``SO_REUSEPORT``:
the kernel spreads connections over the processes. The parent is worker 0, on the data
directory itself, and listens at once; the others listen only once their projection caught up
with the log, so no connection reaches a worker that would answer 503 while it recovers.

What holds, and what it costs:

- read-your-writes stays exact per write token: a read carrying a token waits until *the worker
  that serves it* applied that write, whichever it is. A ``wait=true`` write answers once the
  worker that took it applied it; a read on another connection without the token may reach a
  worker a moment behind (a connection stays with one worker: qdrant-client's keep-alive HTTP
  connection and its gRPC channel do);
- memory and projection work are N times one server's: every worker holds every collection and
  applies every event (measured in docs/benchmarks.md);
- a worker that exits stops the whole server (exit status 1), as a projector failure does: a
  supervisor restarts it whole.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from infra.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

_STOP_SECONDS = 60


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings (1 .. workers - 1): its own data directory and projection name."""
    return settings.replace(data_dir=settings.data_dir / "workers" / str(index),
                            projection=f"{settings.projection}-w{index}", workers=1, reuse_port=True,
                            worker=index)


def environment(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``VECTORIZER_*`` variables that rebuild them (flags included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[ENV_PREFIX + f.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class Workers:
    """Workers 1 .. N - 1 of ``settings``, as child processes; ``on_exit`` is called if one exits unasked."""

    def __init__(self, settings: Settings, on_exit: Callable[[str], None]) -> None:
        self.settings = settings
        self.on_exit = on_exit
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()

    def start(self) -> None:
        for index in range(1, self.settings.workers):
            own = worker_settings(self.settings, index)
            Path(own.data_dir).mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen([sys.executable, "-m", "vectorizer", "serve"], env=environment(own))
            self.procs.append(proc)
            log.info("worker %d: pid %d, data directory %s", index, proc.pid, own.data_dir)
            threading.Thread(target=self._watch, args=(index, proc), name=f"vectorizer-worker-{index}",
                             daemon=True).start()

    def _watch(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        if not self._stopping.is_set():
            self.on_exit(f"worker {index} (pid {proc.pid}) exited with status {code}")

    def stop(self) -> None:
        """SIGTERM every worker (each stops as a server does: drain, final snapshot), then wait."""
        self._stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %d s; killing it", proc.pid, _STOP_SECONDS)
                proc.kill()
                proc.wait()
