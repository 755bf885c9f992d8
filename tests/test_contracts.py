"""The committed generated code matches the protos (``make proto``)."""

from __future__ import annotations

import filecmp
import subprocess
import sys

from helpers import ROOT


def test_generated_contracts_are_up_to_date(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "protos" / "codegen.py"), str(tmp_path)],
                   check=True, capture_output=True)  # fmt: skip
    fresh = sorted((tmp_path / "tanu" / "v1").iterdir())
    committed = ROOT / "libs" / "tanu" / "v1"
    names = sorted(p.name for p in fresh)
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file()), (
        "generated files differ from libs/tanu/v1: run `make proto`"
    )
    stale = [
        n
        for n in names
        if not filecmp.cmp(tmp_path / "tanu" / "v1" / n, committed / n, shallow=False)
    ]
    assert not stale, f"stale generated code {stale}: run `make proto` and commit the result"
