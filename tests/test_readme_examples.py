"""The README's examples can be followed in order on one running system.

They were run that way (a server from ``vectorizer up``, then every block in turn); these checks
keep the properties that made that possible: the reader is told how ``vectorizer`` gets on
``PATH``, no two examples create the same collection, and a second server gets its own ports (HTTP and gRPC).
"""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def _code_blocks() -> list[str]:
    return re.findall(r"```(?:sh|python)\n(.*?)```", README, flags=re.S)


def test_quick_start_says_how_the_command_gets_on_path() -> None:
    quick = _section("Quick start")
    assert "source .venv/bin/activate" in quick and "vectorizer --version" in quick


def test_the_examples_create_distinct_collections() -> None:
    created = []
    for block in _code_blocks():
        created += re.findall(r"collections create ([\w.-]+)", block)
        created += re.findall(r"create_collection\(\s*\"([\w.-]+)\"", block)
    assert len(created) >= 3, created
    assert len(created) == len(set(created)), f"collections created twice: {created}"


def test_a_second_server_in_the_examples_gets_its_own_port() -> None:
    for block in _code_blocks():
        for line in block.splitlines():
            command = line.split("#")[0]
            if re.search(r"\bvectorizer\b.*--data-dir\b.*\bserve\b", command):
                assert "--http" in command and "--grpc" in command, line
