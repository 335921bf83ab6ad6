"""A catalog database that is down when the server starts does not stop the server: its port
opens, it answers liveness, reports not ready (503, naming no secret) and serves nothing until
the catalog answers; the projector keeps retrying its recovery meanwhile."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from tests.api.conftest import serving, unique
from tests.conftest import free_port


def test_a_catalog_down_at_start_leaves_the_port_open_and_the_server_not_ready(kafka_bootstrap: str,
                                                                                 tmp_path: Path) -> None:
    nothing_there = free_port()  # no database listens on it
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('catdown')}", data_dir=tmp_path / "data",
                        catalog_url=f"postgresql+psycopg://vz:secret-pw@127.0.0.1:{nothing_there}/catalog")
    with serving(settings, wait_ready=False) as server:
        assert server.http.get("/health").status_code == 200
        ready = server.http.get("/ready")
        assert ready.status_code == 503, ready.text
        assert "secret-pw" not in ready.text
        r = server.http.post("/collections/c/points/count", json={})
        assert r.status_code == 503, r.text
        assert server.replica.projector.stats.recovery_seconds is None  # recovery retried, not faked
