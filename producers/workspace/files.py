"""Reading a workspace's files and cutting them into chunks.

A chunk is a run of whole lines of at most ``size`` characters (a longer line is cut);
the next chunk starts with the last lines of the previous one that fit in ``overlap``
characters, so a sentence split by a boundary is found in one of the two. Chunks are
numbered from 0; their ids are ``<relative path>#<number>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash

from producers.workspace.config import CollectionSpec

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "node_modules"})


@dataclass(frozen=True)
class Chunk:
    number: int
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str


@dataclass(frozen=True)
class TextFile:
    relative: str
    digest: str
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class Skipped:
    relative: str
    reason: str  # "binary" | "huge" | "unreadable" | "not UTF-8"


def chunk_id(relative: str, number: int) -> str:
    return f"{relative}#{number}"


def scan(spec: CollectionSpec) -> Iterator[str]:
    """Relative posix paths under ``spec.root`` that the collection includes, sorted."""
    found = []
    for folder, dirs, files in os.walk(spec.root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        rel_folder = Path(folder).relative_to(spec.root)
        for name in files:
            relative = (rel_folder / name).as_posix()
            if spec.matches(relative):
                found.append(relative)
    yield from sorted(found)


def read(spec: CollectionSpec, relative: str) -> TextFile | Skipped:
    """The file's digest and chunks, or why it is skipped."""
    path = spec.root / relative
    try:
        if path.stat().st_size > spec.max_file_bytes:
            return Skipped(relative, f"huge (over {spec.max_file_bytes:,} bytes)")
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(relative, f"unreadable ({exc.strerror})")
    if b"\0" in data[:8192]:
        return Skipped(relative, "binary")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Skipped(relative, "binary (not UTF-8 text)")
    return TextFile(relative, xxhash.xxh3_64_hexdigest(data), tuple(split(text, spec.chunk_size, spec.chunk_overlap)))


def split(text: str, size: int, overlap: int) -> Iterator[Chunk]:
    """Cut ``text`` into chunks of whole lines (see the module doc); blank chunks are left out."""
    lines: list[tuple[int, str]] = []  # (1-based line number, text with its newline), long lines cut
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        lines += [(number, line[i:i + size]) for i in range(0, max(len(line), 1), size)]
    count, start = 0, 0
    while start < len(lines):
        end, length = start, 0
        while end < len(lines) and length + len(lines[end][1]) <= size:
            length += len(lines[end][1])
            end += 1
        body = "".join(part for _, part in lines[start:end])
        if body.strip():
            yield Chunk(count, lines[start][0], lines[end - 1][0], body)
            count += 1
        if end >= len(lines):
            return
        back, kept = end, 0  # the overlap: whole pieces from the end that fit, but always move on
        while back - 1 > start and kept + len(lines[back - 1][1]) <= overlap:
            back -= 1
            kept += len(lines[back][1])
        start = back
