"""What ``/telemetry``, ``/cluster`` and ``/`` report: a truthful subset of Qdrant's shapes.

Only fields this server can fill with real values are present; Qdrant's optional sections it has
nothing for (memory, hardware, search pool, per-shard telemetry) are left out, as Qdrant leaves
out what it does not collect. Request figures come from :class:`~vectorizer.api.metrics.Metrics`.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.settings import Settings
from vectorizer import __version__

if TYPE_CHECKING:
    from projections.collection import Collection
    from vectorizer.api.metrics import Metrics
    from vectorizer.api.reader import ProjectionReader

#: What ``GET /`` names this server (Qdrant's ``title``).
TITLE = "vectorizer"
#: The header on ``GET /`` with Vectorizer's own version (``version`` carries the Qdrant API level).
VERSION_HEADER = "x-vectorizer-version"


@functools.cache
def git_commit() -> str | None:
    """The commit this package was run from, when it runs from a git checkout of Vectorizer
    (an editable install); ``None`` otherwise (an installed wheel, no git)."""
    package = Path(__file__).resolve().parents[1]
    try:
        top = subprocess.run(["git", "-C", str(package), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(top) != 2 or Path(top[0]).resolve() != package.parent:  # a wheel inside some other repository
        return None
    return top[1]


def peer_id(settings: Settings) -> int:
    """This server's peer id in cluster answers: stable for a projection of a topic (as Qdrant's
    peer id is stable across restarts), a positive 63-bit integer."""
    digest = hashlib.blake2b(f"{settings.topic}\0{settings.projection}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1 or 1


def collection_cluster(settings: Settings, points: int) -> dict[str, Any]:
    """Qdrant's ``CollectionClusterInfo`` of a single node: one local shard, active."""
    return {"peer_id": peer_id(settings), "shard_count": 1,
            "local_shards": [{"shard_id": 0, "points_count": points, "state": "Active"}],
            "remote_shards": [], "shard_transfers": []}


def telemetry(projection: ProjectionReader, metrics: Metrics, details_level: int, anonymize: bool,
              params_of: Callable[[Collection], dict[str, Any]]) -> dict[str, Any]:
    """Qdrant's ``TelemetryData``: ``id``, ``app``, ``collections`` (per collection from level 1:
    Qdrant's aggregated ``{vectors, optimizers_status, params}``), ``cluster`` and ``requests``.

    ``vectors`` counts the dense vectors (sparse ones are not counted). ``params_of(collection)``
    is the collection's ``config.params`` as collection info shows them; ``anonymize`` hashes the
    vector names in them (names may say what the data is; Qdrant's anonymizer hides them too).
    """
    served = sorted(projection.collections().items())
    collections: dict[str, Any] = {"number_of_collections": len(served)}
    if details_level >= 1:
        entries = []
        for _name, coll in served:
            with coll.lock.read():
                vectors = sum(len(index) for _, index in coll.dense_spaces())
            params = params_of(coll)
            entries.append({"vectors": vectors, "optimizers_status": "ok",
                            "params": _anonymized(params) if anonymize else params})
        collections["collections"] = entries
    requests = metrics.requests.telemetry()
    return {
        "id": metrics.instance_id,
        "app": {"name": TITLE, "version": __version__, "startup": metrics.startup.isoformat()},
        "collections": collections,
        "cluster": {"enabled": False},
        "requests": {"rest": {"responses": requests}, "grpc": {"responses": {}}},
    }


def _anonymized(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with vector names hashed (they may say what the data is, as Qdrant's anonymizer
    assumes); route templates and counts name nothing and stay as they are."""
    out = dict(params)
    vectors = params.get("vectors")
    if isinstance(vectors, dict) and "size" not in vectors:
        out["vectors"] = {_hashed(name): spec for name, spec in vectors.items()}
    if isinstance(params.get("sparse_vectors"), dict):
        out["sparse_vectors"] = {_hashed(name): spec for name, spec in params["sparse_vectors"].items()}
    return out


def _hashed(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
