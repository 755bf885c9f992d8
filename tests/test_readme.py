"""The README's commands run as a newcomer types them: `tanu up` (what
`make up` runs) in a fresh folder, then every block marked
``<!-- readme-test -->`` in order, from that folder, each checked for a
zero exit status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, read_until

pytestmark = pytest.mark.slow

MARK = "<!-- readme-test -->"


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block right after the marker."""
    pattern = re.compile(re.escape(MARK) + r"\s*\n```(\w+)\n(.*?)\n```", re.S)
    return pattern.findall(text)


def test_the_readme_marks_the_quick_start_the_python_client_and_the_rest_examples():
    langs = [lang for lang, _ in marked_blocks((ROOT / "README.md").read_text())]
    # the quick start, the template, the Python client, then OSIA: a bank's
    # verify, a civil registry's person with two encounters, an asynchronous identify
    assert langs == ["sh", "sh", "python", "sh", "sh", "sh"], langs


def test_every_marked_readme_command_runs_as_written(tmp_path):
    home = tmp_path / "tanu"
    (home / "var").mkdir(parents=True)
    venv = Path(sys.executable).resolve().parent.parent
    (home / ".venv").symlink_to(ROOT / ".venv" if (ROOT / ".venv").exists() else venv)
    (home / "var" / "models").symlink_to(ROOT / "var" / "models")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANU_")}
    up = subprocess.Popen(
        [".venv/bin/tanu", "up"], cwd=home, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        out = read_until(up, "Tanu is up", 150)
        assert "Tanu is up" in out, out
        for i, (lang, code) in enumerate(marked_blocks((ROOT / "README.md").read_text())):
            if lang == "python":
                cmd = [".venv/bin/python", "-c", code]
            else:
                cmd = ["bash", "-c", "set -euo pipefail\n" + code]
            r = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=240)
            assert r.returncode == 0, (
                f"README block {i} ({lang}) failed:\n{code}\n{r.stdout}\n{r.stderr}"
            )
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.communicate()
