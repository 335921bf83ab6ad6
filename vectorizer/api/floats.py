"""Stored float32 vectors as Qdrant prints them: each number its shortest round-trip decimal.

``float(np.float32(0.15))`` is ``0.15000000596046448``; Qdrant answers ``0.15``. ``shortest``
returns, for every float32, the double nearest to its shortest decimal (the fewest
significant digits that parse back to the same float32, the nearest such decimal when
several have that length: what ``str(np.float32(x))`` prints), so ``json`` prints that
decimal. Contract: ``np.float32(out) == stored`` bit for bit, always; the shortest form
is computed vectorised, element-wise fallbacks only for zeros, powers of two, values
below 1e-14 or above 1e22 (about 4x faster than ``str`` per element, see
``tests/api/test_vector_output.py``).
"""

from __future__ import annotations

import numpy as np

_POW10 = np.array([float(10 ** i) for i in range(23)])  # 10**0 .. 10**22, each exact in a double
_MIN_EXP, _MAX_EXP = -14, 22  # decimal exponents for which every 1..9-digit scale is an exact power


def shortest(vectors: np.ndarray) -> np.ndarray:
    """Float64 array (same shape) whose ``repr`` of each value is its float32's shortest decimal."""
    flat = np.ascontiguousarray(vectors, dtype=np.float32).ravel()
    x = flat.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        exp = np.floor(np.log10(np.abs(x)))
    # Powers of two have a lopsided rounding interval (the nearest decimal of a length may miss it
    # while another of that length hits it): they go element-wise, with zeros, inf/nan, extremes.
    fallback = (((flat.view(np.uint32) & 0x7FFFFF) == 0) | ~np.isfinite(exp)
                | (exp < _MIN_EXP) | (exp > _MAX_EXP))
    e = np.where(fallback, 0, exp).astype(np.int64)
    # Binary search per element over 1..9 significant digits: the nearest d-digit decimal
    # round-trips for every d at or above the shortest length (the rounding interval is symmetric).
    lo, hi = np.ones(len(x), np.int64), np.full(len(x), 9, np.int64)
    best = x.copy()
    for _ in range(4):  # ceil(log2(9))
        mid = (lo + hi) >> 1
        candidate = _nearest(x, e, mid)
        hit = candidate.astype(np.float32) == flat
        np.copyto(best, candidate, where=hit)
        hi, lo = np.where(hit, mid, hi), np.where(hit, lo, mid + 1)
    untested = hi == 9  # 9 digits always round-trip a float32; never probed by the search
    if untested.any():
        np.copyto(best, _nearest(x, e, hi), where=untested)  # hi is 9 there
    rest = np.flatnonzero(fallback | (best.astype(np.float32) != flat))
    if len(rest):
        best[rest] = [float(str(value)) for value in flat[rest]]  # numpy's Dragon4, shortest unique
    return best.reshape(np.shape(vectors))


def _nearest(x: np.ndarray, e: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """The double nearest to ``x`` rounded to ``digits`` significant decimal digits (``e``: its exponent).

    ``m / 10**k`` and ``m * 10**k`` of an exact integer and an exact power are correctly rounded,
    so the result is the double a parser gives for that decimal.
    """
    k = digits - 1 - e
    scale = _POW10[np.abs(k)]
    up = k >= 0
    m = np.round(np.where(up, x * scale, x / scale))
    return np.where(up, m / scale, m * scale)
