"""Helpers for the in-VM suite (imported by its tests; not a test module)."""

from __future__ import annotations

import subprocess


def ipvsadm(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ipvsadm", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ipvsadm {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def saved() -> list[str]:
    """``ipvsadm -Sn`` lines, sorted: the kernel table as the reference tool sees it."""
    return sorted(line for line in ipvsadm("-Sn").splitlines() if line.strip())
