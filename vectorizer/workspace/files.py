"""Reading a workspace's files and cutting them into chunks.

A chunk is a run of whole lines of at most ``size`` characters (a longer line is cut);
the next chunk starts with the last lines of the previous one that fit in ``overlap``
characters, so a sentence split by a boundary is found in one of the two. Chunks are
numbered from 0; their ids are ``<relative path>#<number>``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash

from schemas.ids import MAX_STR_ID_LEN
from vectorizer.workspace.config import SKIP_DIRS, CollectionSpec

_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


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


def scan(spec: CollectionSpec, unreadable: list[str] | None = None) -> Iterator[str]:
    """Relative posix paths under ``spec.root`` that the collection includes, sorted. Folders that
    cannot be listed are appended to ``unreadable`` (their files are neither seen nor deleted)."""
    found = []

    def failed(exc: OSError) -> None:
        if unreadable is not None and exc.filename:
            unreadable.append(Path(exc.filename).relative_to(spec.root).as_posix())

    for folder, dirs, files in os.walk(spec.root, onerror=failed):
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
    problem = _name_problem(relative)
    if problem:
        return Skipped(relative, problem)
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(spec.root):
            return Skipped(relative, "a symbolic link leading out of the root")
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return Skipped(relative, "not a regular file")
        if st.st_size > spec.max_file_bytes:
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


def _name_problem(relative: str) -> str | None:
    """Why a path cannot name chunks (ids are ``<path>#<n>``, UTF-8, at most 512 characters)."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8"
    if "\0" in relative:
        return "its name holds a NUL character"
    if len(chunk_id(relative, 10**6)) > MAX_STR_ID_LEN:
        return f"its path is too long for chunk ids ({MAX_STR_ID_LEN} characters at most)"
    return None


def split(text: str, size: int, overlap: int) -> Iterator[Chunk]:
    """Cut ``text`` into chunks of whole lines (see the module doc); blank chunks are left out."""
    lines: list[tuple[int, str]] = []  # (1-based line number, text with its newline), long lines cut
    for number, line in enumerate(_LINE.findall(text), start=1):  # "\n" ends a line, as editors and grep -n
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
