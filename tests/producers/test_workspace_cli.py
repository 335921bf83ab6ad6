"""The README's example: index this repository's docs with the CLI, then search them by text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra.settings import Settings
from tests.api.conftest import serving

ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VECTORIZER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VECTORIZER_TOPIC=settings.topic,
               VECTORIZER_DATA_DIR=str(settings.data_dir), VECTORIZER_HTTP=settings.http)
    return subprocess.run([sys.executable, "-m", "vectorizer", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_workspace_sync_of_this_repository_then_search_by_text(settings: Settings) -> None:
    with serving(settings) as server:
        synced = _cli(server.settings, "--json", "workspace", "sync", "vectorize-workspace.yml")
        assert synced.returncode == 0, synced.stderr[-3000:]
        (report,) = json.loads(synced.stdout)
        assert report["name"] == "vectorizer-docs" and report["created"] and report["skipped"] == []
        assert report["published"] == report["files"] >= 4 and report["chunks"] > report["files"]
        assert "indexing files" in synced.stderr, "progress on the first sync"

        found = _cli(server.settings, "--json", "search", "vectorizer-docs", "--text",
                     "acknowledged writes lost after kill -9", "-k", "5")
        assert found.returncode == 0, found.stderr[-3000:]
        hits = json.loads(found.stdout)
        assert len(hits) == 5 and all(h["payload"]["path"].endswith(".md") for h in hits)
        assert any("kill -9" in h["payload"]["text"] for h in hits[:3]), [h["payload"]["path"] for h in hits]
        shown = _cli(server.settings, "search", "vectorizer-docs", "--text", "snapshot", "-k", "2")
        assert shown.returncode == 0 and ".md:" in shown.stdout, shown.stdout

        again = _cli(server.settings, "--json", "workspace", "sync", "vectorize-workspace.yml")
        assert again.returncode == 0 and json.loads(again.stdout)[0]["published"] == 0, again.stdout
        points = settings.data_dir.parent / "points.jsonl"
        points.write_text(json.dumps({"id": 1, "vector": [0.0] * 512}) + "\n")
        for args in (("upsert", "vectorizer-docs", str(points)), ("delete", "vectorizer-docs", "README.md#0"),
                     ("collections", "delete", "vectorizer-docs")):
            refused = _cli(server.settings, *args)
            assert refused.returncode != 0 and "read-only" in refused.stderr, (args, refused.stderr)
