"""Regenerate ``vectorizer/grpc_api/qdrant/`` from Qdrant's ``.proto`` files in ``proto/``.

``python -m vectorizer.grpc_api.generate`` (needs the dev extra's ``grpcio-tools``). The
``.proto`` files are Qdrant's own, as published with the pinned qdrant-client (its
``qdrant_client/proto``, copied from Qdrant's ``lib/api/src/grpc/proto``), unchanged: the
descriptors this produces are the ones qdrant-client registers, so both load in one process.
The generated modules import each other flat (``import points_pb2``); they are rewritten to
relative imports so the package imports from anywhere. ``tests/grpc/test_generated.py``
checks that the checked-in modules are what this produces.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
PROTO = HERE / "proto"
OUT = HERE / "qdrant"
_FLAT_IMPORT = re.compile(r"^import (\w+_pb2) as ", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    """Write the generated modules into ``out``; the files written."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.name) for p in PROTO.glob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        status = protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={tmp}",
                              f"--grpc_python_out={tmp}", *protos])
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status}")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted(Path(tmp).glob("*.py")):
            dest = out / src.name
            dest.write_text(_FLAT_IMPORT.sub(r"from . import \1 as ", src.read_text()))
            written.append(dest)
    (out / "__init__.py").write_text('"""Generated from Qdrant\'s .proto files by vectorizer.grpc_api.generate."""\n')
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path)
