"""hnswlib's writer ignores write errors; ``check_file`` must catch every short or padded file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from projections.index.hnsw import VectorIndex, check_file


@pytest.mark.parametrize("n", [0, 1, 7, 3000])
def test_check_file_accepts_whole_files_and_rejects_every_truncation(tmp_path: Path, n: int) -> None:
    index = VectorIndex(16, "cosine", 8, 32, 32, max(n, 1))
    if n:
        index.add(np.arange(n), index.prepare(np.random.default_rng(n).random((n, 16), dtype=np.float32)))
    whole = tmp_path / "whole.hnsw"
    index.save(whole)  # checks it too
    data = whole.read_bytes()
    damaged = tmp_path / "damaged.hnsw"
    for cut in sorted({*range(0, len(data), max(1, len(data) // 150)), len(data) - 1, len(data) - 4}):
        damaged.write_bytes(data[:cut])
        with pytest.raises(OSError, match="damaged.hnsw"):
            check_file(damaged)
    damaged.write_bytes(data + bytes(4))
    with pytest.raises(OSError, match="not the size"):
        check_file(damaged)
