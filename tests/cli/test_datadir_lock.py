"""A data directory in use is locked: ``restore`` refuses it while ``serve`` or ``project`` runs there.

Through the real broker and real processes: the running role is ``python -m vectorizer``, and
its lock goes with it when it is killed with SIGKILL (no stale lock to clean up by hand).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from producers import VectorProducer
from projections.catalog.store import Catalog
from tests.conftest import free_port
from tests.helpers import running_projector, wait_until
from vectorizer.cli import app
from vectorizer.datadir import hold, holder
from vectorizer.errors import DataDirInUse

ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--kafka-bootstrap", settings.kafka_bootstrap, "--topic", settings.topic,
                                      "--data-dir", str(settings.data_dir), *args])
    return result.exit_code, result.output


def _positions(settings: Settings) -> dict[int, int]:
    catalog = Catalog(settings.resolved_catalog_url, settings.projection, settings.topic)
    try:
        return catalog.positions()
    finally:
        catalog.close()


@pytest.mark.parametrize("role", ["serve", "project"])
def test_restore_refuses_a_data_directory_in_use_until_its_holder_dies(settings: Settings, tmp_path: Path,
                                                                       role: str) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("docs", 4, "l2")
        token = p.upsert("docs", [1, 2], np.eye(2, 4, dtype=np.float32))
    with running_projector(settings) as proj:
        proj.wait_for(token.partition, token.offset, 30)
    code, out = _cli(settings, "backup", str(tmp_path / "bk"))
    assert code == 0, out
    with VectorProducer(settings) as p:  # the running process applies this; a restore would rewind it
        later = p.upsert("docs", [3], np.ones((1, 4), np.float32))

    env = dict(os.environ, VECTORIZER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VECTORIZER_TOPIC=settings.topic,
               VECTORIZER_DATA_DIR=str(settings.data_dir), VECTORIZER_HTTP=f"127.0.0.1:{free_port()}",
               VECTORIZER_CATALOG_URL="")
    log = tmp_path / f"{role}.log"
    with open(log, "wb") as out_file:
        proc = subprocess.Popen([sys.executable, "-m", "vectorizer", role], cwd=ROOT, env=env,
                                stdout=out_file, stderr=subprocess.STDOUT)
    try:
        def applied() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            return _positions(settings).get(later.partition, -1) >= later.offset

        wait_until(applied, 60, interval=0.2, message=f"`vectorizer {role}` to apply the later write")
        code, out = _cli(settings, "restore", str(tmp_path / "bk"))
        assert code == 1, out
        assert f"is in use by pid {proc.pid} (vectorizer {role})" in out, out
        assert _positions(settings)[later.partition] >= later.offset, "the catalog was not rewound"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    code, out = _cli(settings, "restore", str(tmp_path / "bk"))  # the kill released the lock
    assert code == 0, out
    assert _positions(settings)[later.partition] < later.offset, "restored: the catalog is at the backup's offsets"


def test_the_lock_is_exclusive_names_its_holder_and_goes_with_its_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with hold(data_dir, "vectorizer serve"), \
            pytest.raises(DataDirInUse, match=rf"in use by pid {os.getpid()} \(vectorizer serve\)"), \
            hold(data_dir, "vectorizer restore"):
        pass
    with hold(data_dir, "vectorizer restore"):  # released at the end of the block
        assert holder(data_dir) == f"pid {os.getpid()} (vectorizer restore)"

    code = ("import sys, time; from pathlib import Path; from vectorizer.datadir import hold\n"
            "with hold(Path(sys.argv[1]), 'vectorizer project'):\n"
            "    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(data_dir)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
        with pytest.raises(DataDirInUse, match=rf"pid {proc.pid} \(vectorizer project\)"), \
                hold(data_dir, "vectorizer restore"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with hold(data_dir, "vectorizer restore"):
        pass
