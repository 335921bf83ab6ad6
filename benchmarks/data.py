"""Seeded, reproducible clustered vectors and exact ground truth, cached on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"


def clustered(n: int, dim: int, seed: int = 1, clusters: int = 1000) -> np.ndarray:
    """``n`` float32 vectors around ``clusters`` Gaussian centres (spread like real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = centres[rng.integers(0, clusters, e - s)] + 0.35 * rng.normal(size=(e - s, dim)).astype(np.float32)
    return out


def dataset(n: int, dim: int, queries: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base, queries, ground-truth top-100 ids by cosine) for ``n`` x ``dim``; cached."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"clustered-{n}-{dim}-{queries}.npz"
    if path.exists():
        z = np.load(path)
        return z["base"], z["queries"], z["truth"]
    everything = clustered(n + queries, dim)
    base, qs = everything[:n], everything[n:]
    truth = exact_topk(base, qs, 100)
    np.savez(path, base=base, queries=qs, truth=truth)
    return base, qs, truth


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact cosine top-k ids, chunked over the base so memory stays bounded."""
    bn = base / np.linalg.norm(base, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best_s = np.full((len(qn), k), -np.inf, np.float32)
    best_i = np.zeros((len(qn), k), np.int64)
    for s in range(0, len(bn), 200_000):
        sims = qn @ bn[s:s + 200_000].T
        top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, top + s], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i
