"""Build tool: generates the Python contracts in ``tanu.v1`` from ``protos/tanu/v1``.

``make proto`` writes them into ``libs/``; the contract test runs this script
into a temporary folder and fails when the committed files differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"

_INIT = '"""Generated gRPC/protobuf contracts (``make proto``); do not edit."""\n'


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc (from the pinned grpcio-tools) and returns the files written."""
    from grpc_tools import protoc  # dev dependency, needed only here

    protos = sorted(PROTO_ROOT.glob("tanu/v1/*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    pkg = out_dir / "tanu" / "v1"
    pkg.mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    (pkg / "__init__.py").write_text(_INIT)
    return sorted(p for p in pkg.iterdir() if p.is_file())


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "libs")
    for path in generate(target):
        print(path.relative_to(target))
