"""The `lvsd` entry point as an operator's shell uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    # `lvsd check-config --json | head -1`: the reader leaves early; no traceback may follow.
    conf = tmp_path / "big.conf"
    conf.write_text("".join(
        f"virtual_server 192.0.2.{i % 250 + 1} {1000 + i} {{\n protocol TCP\n"
        f" real_server 198.51.100.1 80 {{ weight 1 }}\n}}\n" for i in range(2000)))
    proc = subprocess.run(
        f"{sys.executable} -m lvsd.cli check-config -f {conf} --json | head -c 10",
        shell=True, capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("{")
    assert "Traceback" not in proc.stderr, proc.stderr
