"""``vectorize-workspace.yml``: projects, each a root folder with collections of files.

    projects:
      - name: vectorizer              # optional, for messages
        root: .                       # relative to this file
        collections:
          - name: vectorizer-docs     # the collection (a workspace collection: read-only over the API)
            include: ["README.md", "docs/**/*.md"]    # globs relative to root (** crosses folders)
            exclude: ["docs/img/**"]
            chunk_size: 1200          # characters per chunk (whole lines where possible)
            chunk_overlap: 200        # characters repeated from the end of the previous chunk
            max_file_bytes: 1048576   # bigger files are skipped and reported
            embedding:                # the embedder; its spec goes on the log with the collection
              model: hashing
              dimension: 512
              sparse: bm25            # a BM25 sparse vector beside the dense one (hybrid search); none: without

Every error names the file, the line and the field: ``vectorize-workspace.yml:9:
projects[0].collections[0].chunk_size: expected an integer in [16, 100000], got 'big'``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec
import yaml

from infra.errors import ConfigurationError
from schemas import validation
from schemas.errors import ValidationError
from vectorizer import embedders
from vectorizer.errors import WorkspaceConfigError

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "node_modules"})  # never indexed
MAX_FILE_BYTES = 64 << 20  # one file's chunks go in one transaction: keep it well within its timeout


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    root: Path
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    chunk_size: int = 1200
    chunk_overlap: int = 200
    max_file_bytes: int = 1 << 20
    embedder: dict[str, Any] = field(default_factory=lambda: embedders.HashingEmbedder().spec)

    def matches(self, relative: str) -> bool:
        """Whether a path (posix, relative to ``root``) is part of this collection."""
        if any(part in SKIP_DIRS for part in relative.split("/")[:-1]):
            return False
        return _spec(self.include).match_file(relative) and not _spec(self.exclude).match_file(relative)

    @property
    def chunking(self) -> str:
        """What a stored chunk was cut with; a change re-chunks every file."""
        return f"{self.chunk_size}/{self.chunk_overlap}"


@dataclass(frozen=True)
class Workspace:
    path: Path
    collections: tuple[CollectionSpec, ...]


@functools.lru_cache(maxsize=256)
def _spec(globs: tuple[str, ...]) -> pathspec.PathSpec[Any]:
    """Globs relative to the root: ``*`` stays within a folder, ``**`` crosses folders (anchored
    gitignore patterns: ``*.txt`` is the root's text files, ``**/*.txt`` all of them)."""
    return pathspec.PathSpec.from_lines("gitignore", [g if g.startswith(("/", "**")) else "/" + g for g in globs])


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.constructor = yaml.SafeLoader("")

    def error(self, node: yaml.Node | None, where: str, message: str) -> WorkspaceConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return WorkspaceConfigError(f"{self.path.name}{line}: {where}: {message}")

    def value(self, node: yaml.Node, where: str = "") -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(node, where or "value", f"not a plain value ({exc})") from None

    def mapping(self, node: yaml.Node, where: str, allowed: set[str], required: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, "expected a mapping (key: value lines)")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node, where or "key")
            if not isinstance(key, str) or key not in allowed:
                raise self.error(key_node, f"{where}.{key}" if where else str(key),
                                 f"unknown field; expected one of {', '.join(sorted(allowed))}")
            if key in out:
                raise self.error(key_node, f"{where}.{key}" if where else key, "given twice")
            out[key] = value_node
        for key in sorted(required - set(out)):
            raise self.error(node, f"{where}.{key}" if where else key, "required")
        return out

    def sequence(self, node: yaml.Node, where: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, where, "expected a list")
        return list(node.value)

    def string(self, node: yaml.Node, where: str) -> str:
        value = self.value(node)
        if not isinstance(value, str) or not value:
            raise self.error(node, where, f"expected a non-empty string, got {value!r}")
        return value

    def globs(self, node: yaml.Node, where: str, required: bool) -> tuple[str, ...]:
        items = [(node, where)] if isinstance(node, yaml.ScalarNode) else [
            (item, f"{where}[{i}]") for i, item in enumerate(self.sequence(node, where))]
        if required and not items:
            raise self.error(node, where, "expected at least one glob")
        globs = []
        for item, at in items:
            glob = self.string(item, at).removeprefix("./")
            if glob.startswith("!"):
                raise self.error(item, at, f"{glob!r}: negation is not supported here; list it under exclude")
            if not glob or glob.startswith("../") or "/../" in glob:
                raise self.error(item, at, f"{glob!r}: a glob must stay inside the root")
            globs.append(glob)
        try:
            _spec(tuple(globs))
        except (ValueError, TypeError) as exc:
            raise self.error(node, where, f"not a valid glob ({exc})") from None
        return tuple(globs)

    def integer(self, node: yaml.Node, where: str, low: int, high: int) -> int:
        value = self.value(node)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(node, where, f"expected an integer in [{low}, {high}], got {value!r}")
        return value


def load(path: Path) -> Workspace:
    """Parse and check ``path``; raise :class:`WorkspaceConfigError` naming the line and field."""
    reader = _Reader(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except OSError as exc:
        raise WorkspaceConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise WorkspaceConfigError(f"{path.name}: not UTF-8 text (byte {exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise WorkspaceConfigError(f"{path.name}{line}: not valid YAML ({exc.problem or exc})") from None
    except yaml.YAMLError as exc:
        raise WorkspaceConfigError(f"{path.name}: not valid YAML ({exc})") from None
    if root is None:
        raise WorkspaceConfigError(f"{path.name}: empty; expected 'projects:'")
    top = reader.mapping(root, "", {"projects"}, {"projects"})
    collections: list[CollectionSpec] = []
    names: dict[str, str] = {}
    for p, project_node in enumerate(reader.sequence(top["projects"], "projects")):
        pw = f"projects[{p}]"
        project = reader.mapping(project_node, pw, {"name", "root", "collections"}, {"root", "collections"})
        if "name" in project:
            reader.string(project["name"], f"{pw}.name")
        base = (path.parent / reader.string(project["root"], f"{pw}.root")).resolve()
        if not base.is_dir():
            raise reader.error(project["root"], f"{pw}.root", f"{base} is not a folder")
        for c, coll_node in enumerate(reader.sequence(project["collections"], f"{pw}.collections")):
            cw = f"{pw}.collections[{c}]"
            coll = reader.mapping(coll_node, cw, {"name", "include", "exclude", "chunk_size", "chunk_overlap",
                                                  "max_file_bytes", "embedding"}, {"name", "include"})
            name = reader.string(coll["name"], f"{cw}.name")
            try:
                validation.collection_name(name)
            except ValidationError as exc:
                raise reader.error(coll["name"], f"{cw}.name", str(exc)) from None
            if name in names:
                raise reader.error(coll["name"], f"{cw}.name", f"collection {name!r} is already defined at "
                                   f"{names[name]}")
            names[name] = cw
            size = reader.integer(coll["chunk_size"], f"{cw}.chunk_size", 16, 100_000) if "chunk_size" in coll \
                else 1200
            overlap = reader.integer(coll["chunk_overlap"], f"{cw}.chunk_overlap", 0, size - 1) \
                if "chunk_overlap" in coll else min(200, size // 4)
            limit = reader.integer(coll["max_file_bytes"], f"{cw}.max_file_bytes", 1, MAX_FILE_BYTES) \
                if "max_file_bytes" in coll else 1 << 20
            spec = embedders.HashingEmbedder().spec
            sparse: str = "bm25"
            if "embedding" in coll:
                emb = reader.mapping(coll["embedding"], f"{cw}.embedding", {"model", "dimension", "ngrams", "sparse"},
                                     {"model"})
                if "sparse" in emb:
                    sparse = reader.string(emb["sparse"], f"{cw}.embedding.sparse")
                    if sparse not in ("bm25", "none"):
                        raise reader.error(emb["sparse"], f"{cw}.embedding.sparse", f"expected bm25 or none, got "
                                                                                  f"{sparse!r}")
                spec = {"name": reader.string(emb["model"], f"{cw}.embedding.model")}
                for key in ("dimension", "ngrams"):
                    if key in emb:
                        spec[key] = reader.value(emb[key])
                try:
                    spec = embedders.build(spec).spec
                except ConfigurationError as exc:
                    message = str(exc).removeprefix("embedder: ")
                    field = next((k for k in ("dimension", "ngrams") if message.startswith(f"embedder.{k}:")), "model")
                    message = message.removeprefix(f"embedder.{field}: ")
                    raise reader.error(emb.get(field, emb["model"]), f"{cw}.embedding.{field}", message) from None
            if sparse == "bm25":
                spec = {**spec, "sparse": embedders.BM25Embedder().spec}
            exclude = reader.globs(coll["exclude"], f"{cw}.exclude", False) if "exclude" in coll else ()
            collections.append(CollectionSpec(name, base, reader.globs(coll["include"], f"{cw}.include", True), exclude,
                                              size, overlap, limit, spec))
    return Workspace(path.resolve(), tuple(collections))
