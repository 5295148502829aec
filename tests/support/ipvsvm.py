"""Run a command inside the throw-away kernel-IPVS VM (``lab/ipvs-vm/lvsd-vm.sh``).

Theory of operation
-------------------
The host kernel may have no IPVS. ``lvsd-vm.sh`` boots Debian's stock 6.1 kernel (IPVS and all
its schedulers as modules) under qemu with a busybox initramfs that chroots into the host's ``/``
(read-only over 9p, with a RAM overlay), so the repository, its virtualenv and the host's tools
are at the same paths inside the guest. One host directory (``out``) is shared read-write and
carries results (e.g. a junit XML file) back. A boot costs ~2 s under software emulation; the
first run downloads and caches the kernel (``~/.cache/lvsd-ipvs-vm``).

This module only locates the script and runs it; it is test and benchmark harness, not shipped
(``tests/support``, on pytest's ``pythonpath``; used by ``tests/kernel`` and
``bench/ipvs_program.py``). The script is found relative to this file, so a checkout at any path
works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # tests/support/ipvsvm.py
SCRIPT = REPO / "lab" / "ipvs-vm" / "lvsd-vm.sh"

#: exit statuses of the script that are about the VM, not the command
VM_TIMEOUT = 124
VM_NO_RESULT = 125


@dataclass(frozen=True, slots=True)
class VMResult:
    returncode: int
    output: str  # the command's stdout and stderr, interleaved
    stderr: str  # the harness's own messages (build progress, console tail on failure)

    @property
    def vm_failed(self) -> bool:
        return self.returncode in (VM_TIMEOUT, VM_NO_RESULT)


def missing() -> str | None:
    """None if the VM can run here, else why not (one line)."""
    if os.geteuid() != 0:
        return "the IPVS VM needs root"
    if shutil.which("qemu-system-x86_64") is None:
        return "the IPVS VM needs qemu-system-x86 (apt-get install qemu-system-x86)"
    if not SCRIPT.is_file():
        return f"{SCRIPT} not found"
    if shutil.which("apt-get") is None and not _cache_dir().is_dir():
        return "the IPVS VM needs apt (Debian) to fetch its kernel the first time"
    return None


def _cache_dir() -> Path:
    if "LVSD_VM_CACHE" in os.environ:
        return Path(os.environ["LVSD_VM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lvsd-ipvs-vm"


def build(timeout: float = 900.0) -> None:
    """Fetch and build the kernel + initramfs cache (no-op when cached)."""
    proc = subprocess.run(["bash", str(SCRIPT), "--build"], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building the IPVS VM failed: {proc.stderr.strip()[-2000:]}")


def run(argv: Sequence[str], *, out: Path | None = None, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, net: bool = False, mem_mb: int = 1024, smp: int = 1,
        timeout: float = 600.0) -> VMResult:
    """Boot the VM, run ``argv`` inside it (cwd = ``cwd`` or ours), return its status + output.

    ``out`` is shared read-write at the same path (the guest sees it as ``$LVSD_VM_OUT``).
    """
    cmd = ["bash", str(SCRIPT), "--mem", str(mem_mb), "--smp", str(smp),
           "--timeout", str(int(timeout))]
    if out is not None:
        cmd += ["--out", str(out)]
    if net:
        cmd.append("--net")
    for k, v in (env or {}).items():
        cmd += ["--env", f"{k}={v}"]
    cmd += ["--", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False,
                          timeout=timeout + 120)  # + build time on a cold cache
    return VMResult(proc.returncode, proc.stdout, proc.stderr)
