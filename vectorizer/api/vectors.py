"""Vectors in requests: Qdrant's ``VectorStruct`` per point (an array, or ``{name: array or
{indices, values}}``) and query vectors, checked against the collection before anything is
published, with Qdrant's messages and status codes.

A collection holds its unnamed vector (``""``), named dense vectors and sparse vectors
(``CollectionConfig.dense`` / ``sparse``). Multivectors (an array of arrays) are refused with a
400 naming the field: the engine stores one vector per name and point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from projections.collection import CollectionConfig
from schemas import events as ev
from schemas import validation as check
from schemas.errors import SparseVectorInvalid, ValidationError
from vectorizer.api import parsing as p
from vectorizer.api.errors import BadRequest, Unprocessable


def not_existing(name: str) -> BadRequest:
    return BadRequest(f"Wrong input: Not existing vector name error: {name}")


def _dimension_error(expected: int, got: int, path: str) -> BadRequest:
    return BadRequest(f"Wrong input: Vector dimension error: expected dim: {expected}, got {got} ({path})")


def _numbers(value: object) -> TypeGuard[list[Any]]:
    return isinstance(value, list) and (p.plain_numbers(value) or all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value))


def is_sparse(value: object) -> bool:
    return isinstance(value, dict) and "indices" in value and "values" in value


def is_multi(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, list) for row in value)


def sparse(value: object, path: str) -> tuple[np.ndarray, np.ndarray]:
    """One sparse vector ``{indices, values}``, sorted by index; Qdrant's 422 for repeated
    indices or values not matching them, its 400 for a wrong type."""
    obj = p.obj(value, path)
    p.fields(obj, path, ("indices", "values"))
    try:
        return check.sparse_vector(p.array(obj["indices"], f"{path}.indices"), p.array(obj["values"], f"{path}.values"),
                                   field=path)
    except SparseVectorInvalid as exc:
        raise Unprocessable(str(exc)) from None
    except ValidationError as exc:
        raise BadRequest(f"Format error in JSON body: {exc}") from None


@dataclass
class _Dense:
    positions: list[int]
    rows: list[object]
    paths: list[str]


@dataclass
class _Sparse:
    positions: list[int]
    rows: list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Vectors:
    """The vectors of a batch of points: the unnamed rows (``None``: none given), and the named blocks."""

    unnamed: np.ndarray | None
    named: tuple[ev.NamedRows, ...]
    sparse: tuple[ev.SparseRows, ...]


class Collector:
    """Gathers each point's ``VectorStruct`` of a request, then checks and packs them by name."""

    def __init__(self, config: CollectionConfig, count: int) -> None:
        self.config, self.count = config, count
        self.dense_specs = config.dense()
        self.sparse_names = set(config.sparse())
        self.unnamed = _Dense([], [], [])
        self.dense: dict[str, _Dense] = {}
        self.sparse: dict[str, _Sparse] = {}

    def add(self, position: int, value: object, path: str) -> None:
        """The vectors of the point at ``position`` (Qdrant's ``VectorStruct``)."""
        if isinstance(value, (list, np.ndarray)):
            self._named(position, "", value, path)
            return
        if not isinstance(value, dict):
            raise BadRequest(f"{path}: expected an array of numbers or an object of named vectors, got "
                             f"{p.show(value)}")
        for name, vector in value.items():
            self._named(position, name, vector, f"{path}.{name}" if name else f'{path}[""]')

    def _named(self, position: int, name: str, value: object, path: str) -> None:
        if name in self.sparse_names:
            if not is_sparse(value):
                raise BadRequest(f"Wrong input: Conversion between sparse and regular vectors failed for vector "
                                 f"'{name}' ({path})")
            self.sparse.setdefault(name, _Sparse([], [])).positions.append(position)
            self.sparse[name].rows.append(sparse(value, path))
            return
        if name not in self.dense_specs:
            raise not_existing(name)
        if is_sparse(value):
            raise BadRequest(f"Wrong input: Conversion between sparse and regular vectors failed for vector "
                             f"'{name}' ({path})")
        if is_multi(value):
            raise BadRequest(f"{path}: multivectors (an array of arrays) are not supported by this server; "
                             f"vectors_config.multivector_config is refused at creation")
        block = self.unnamed if name == "" else self.dense.setdefault(name, _Dense([], [], []))
        if block.positions and block.positions[-1] == position:
            raise BadRequest(f"{path}: vector {name!r} given twice")
        block.positions.append(position)
        block.rows.append(value)
        block.paths.append(path)

    def vectors(self, *, unnamed_required: bool) -> Vectors:
        """Check and pack; ``unnamed_required``: every point must carry the unnamed vector (an upsert
        into a collection that has one)."""
        unnamed = None
        if self.unnamed.positions or (unnamed_required and self.config.has_unnamed):
            if unnamed_required and len(self.unnamed.positions) != self.count:
                missing = sorted(set(range(self.count)) - set(self.unnamed.positions))[0]
                raise BadRequest(f"point {missing}: the collection's unnamed vector is required (it has no "
                                 f"named vectors to give instead)" if not self.config.named() else
                                 f"point {missing}: the unnamed vector is required")
            unnamed = self._rows(self.unnamed, self.config.dimension)
        named = []
        for name, block in self.dense.items():
            named.append(ev.NamedRows(name, *self._ordered(block.positions, self._rows(block,
                                                                                    self.dense_specs[name].size))))
        if not unnamed_required and self.unnamed.positions:  # update_vectors: the unnamed vector by name ""
            named.append(ev.NamedRows("", *self._ordered(self.unnamed.positions, unnamed)))  # type: ignore[arg-type]
            unnamed = None
        blocks = []
        for name, sblock in self.sparse.items():
            order = np.argsort(np.asarray(sblock.positions), kind="stable")
            rows = [sblock.rows[i] for i in order.tolist()]
            offsets = np.zeros(len(rows) + 1, np.int64)
            offsets[1:] = np.cumsum([len(idx) for idx, _ in rows])
            blocks.append(ev.SparseRows(
                name, np.asarray(sblock.positions, np.int64)[order], offsets,
                np.concatenate([idx for idx, _ in rows]).astype(np.uint32) if rows else np.empty(0, np.uint32),
                np.concatenate([val for _, val in rows]).astype(np.float32) if rows else np.empty(0, np.float32)))
        return Vectors(unnamed, tuple(named), tuple(blocks))

    @staticmethod
    def _rows(block: _Dense, dimension: int) -> np.ndarray:
        for row, path in zip(block.rows, block.paths, strict=True):
            if (isinstance(row, np.ndarray) or _numbers(row)) and len(row) != dimension:
                raise _dimension_error(dimension, len(row), path)
        return p.vectors(block.rows, block.paths, dimension)

    @staticmethod
    def _ordered(positions: list[int], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.asarray(positions, np.int64)
        order = np.argsort(at, kind="stable")
        return at[order], np.ascontiguousarray(rows[order])


def query_vector(config: CollectionConfig, using: str, value: object, path: str) -> tuple[str, Any]:
    """A query's vector for the vector ``using``: ``("dense", float32 row)`` or ``("sparse",
    (indices, values))``; a name the collection lacks is Qdrant's 400."""
    if using in config.sparse():
        if not is_sparse(value):
            raise BadRequest(f"Wrong input: Conversion between sparse and regular vectors failed for vector "
                             f"'{using}' ({path})")
        return "sparse", sparse(value, path)
    spec = config.dense().get(using)
    if spec is None:
        raise not_existing(using)
    if is_sparse(value):
        raise BadRequest(f"Wrong input: Conversion between sparse and regular vectors failed for vector "
                         f"'{using}' ({path})")
    if is_multi(value):
        raise BadRequest(f"{path}: multivector queries are not supported by this server")
    if (isinstance(value, np.ndarray) or _numbers(value)) and len(value) != spec.size:
        raise _dimension_error(spec.size, len(value), path)
    return "dense", p.vector(value, path, spec.size)


def raw_query(value: object) -> tuple[str | None, object]:
    """A vector that names its vector (``{"name", "vector"}``, the older search API's
    ``NamedVector`` / ``NamedSparseVector``): ``(name, vector)``; else ``(None, value)``."""
    if isinstance(value, dict) and set(value) == {"name", "vector"} and isinstance(value["name"], str):
        return value["name"], value["vector"]
    return None, value


def check_name(config: CollectionConfig, name: str) -> str:
    if name not in config.dense() and name not in config.sparse():
        raise not_existing(name)
    return name


__all__ = ["Collector", "Vectors", "check_name", "not_existing", "query_vector", "raw_query", "sparse"]
