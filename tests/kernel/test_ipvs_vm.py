"""Kernel IPVS, for real: boot the throw-away VM once, run ``guest/`` inside it, report here.

The host kernel has no IPVS, so the suite in ``tests/kernel/guest`` runs inside a qemu VM
(``lab/ipvs-vm/lvsd-vm.sh``: Debian's 6.1 kernel, the host's / as its root). The VM is booted
ONCE per session (a module-scoped fixture); the guest's pytest writes a junit XML file to the
shared ``out`` directory and every guest test function becomes one host test here, failing with
the guest's failure text. A guest test that did not run fails here too (nothing passes by
omission). Under ``CI=true`` a missing root/qemu fails instead of skipping (tests/conftest.py).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import ipvsvm
from conftest import require

# the VM runs under software emulation: on a busy 2-core machine the guest suite takes several
# times its quiet ~4 min, so the bounds are the VM's own (GUEST_TIMEOUT), not pytest's default
GUEST_TIMEOUT = 1500
pytestmark = [pytest.mark.kernel, pytest.mark.timeout(GUEST_TIMEOUT + 300)]

HERE = Path(__file__).resolve().parent
GUEST = HERE / "guest"
REPO = HERE.parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def guest_tests() -> list[str]:
    """``module::function`` for every test function in guest/ (read without importing)."""
    ids = []
    for f in sorted(GUEST.glob("test_*.py")):
        tree = ast.parse(f.read_text(), str(f))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    node.name.startswith("test_"):
                ids.append(f"{f.stem}::{node.name}")
    return ids


@dataclass
class GuestRun:
    returncode: int
    output: str
    harness: str
    cases: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # id -> results

    def tail(self, n: int = 60) -> str:
        text = (self.output + "\n" + self.harness).strip().splitlines()
        return "\n".join(text[-n:])


def _parse_junit(path: Path) -> dict[str, list[tuple[str, str, str]]]:
    """module::function -> [(case name, outcome, text)] from a pytest junit file."""
    cases: dict[str, list[tuple[str, str, str]]] = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        module = tc.get("classname", "").rsplit(".", 1)[-1]
        name = tc.get("name", "")
        func = name.split("[", 1)[0]
        outcome, text = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error"):
                outcome = child.tag
                text = (child.get("message", "") + "\n" + (child.text or "")).strip()
            elif child.tag == "skipped":
                outcome = "skipped"
                text = child.get("message", "")
        cases.setdefault(f"{module}::{func}", []).append((name, outcome, text))
    return cases


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuestRun]:
    why = ipvsvm.missing()
    if why:
        if IN_CI:
            pytest.fail(f"required capability missing in CI: {why}", pytrace=False)
        pytest.skip(why)
    out = tmp_path_factory.mktemp("ipvs-vm-out")
    junit = out / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "tests/kernel/guest", "-p", "no:cacheprovider",
            "-q", "-rfEs", "-o", "junit_family=xunit1", f"--junitxml={junit}"]
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    # the guest sees the checkout read-only and (like CI here) writes no bytecode: without
    # compiled files every Python it starts (two per `lvsd run`: the daemon and its VRRP
    # child) compiles lvsd from source under software emulation, a minute per start. So
    # compile the checkout's sources once on the host, next to them (__pycache__ is ignored
    # by git; a cache prefix would hide the stdlib's and site-packages' compiled files).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(REPO / "src"),
                    str(REPO / "tests")],
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                   check=True, capture_output=True, timeout=600)
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]  # the guest's env starts empty
    t0 = time.monotonic()
    # two vCPUs: each `lvsd run` is two processes, and the pairs start both directors at once
    res = ipvsvm.run(argv, out=out, cwd=REPO, env=env, smp=2, timeout=GUEST_TIMEOUT)
    run = GuestRun(res.returncode, res.output, res.stderr)
    if junit.is_file():
        run.cases = _parse_junit(junit)
    # figures guest tests leave in *.report files (e.g. failed requests per event): shown
    # with -s, so a run of this layer also measures it
    print(f"\n[kernel] VM boot + guest suite: {time.monotonic() - t0:.1f} s")
    for rep in sorted(out.glob("*.report")):
        print(f"[kernel] {rep.name}:\n{rep.read_text()}")
    yield run


def test_vm_ran_the_guest_suite(guest_run: GuestRun) -> None:
    """The VM booted, pytest ran inside and reported (rc 0 all passed, 1 some failed)."""
    assert guest_run.returncode in (0, 1), (
        f"guest suite did not complete (rc {guest_run.returncode}):\n{guest_run.tail()}")
    assert guest_run.cases, f"no junit results from the guest:\n{guest_run.tail()}"


@pytest.mark.parametrize("guest_test", guest_tests())
def test_in_vm(guest_run: GuestRun, guest_test: str) -> None:
    results = guest_run.cases.get(guest_test)
    if not results:
        pytest.fail(f"{guest_test} did not run in the VM (rc {guest_run.returncode}):\n"
                    f"{guest_run.tail()}", pytrace=False)
    bad = [r for r in results if r[1] in ("failure", "error")]
    if bad:
        pytest.fail("\n\n".join(f"[guest] {n}: {o}\n{t}" for n, o, t in bad), pytrace=False)
    skipped = [r for r in results if r[1] == "skipped"]
    if skipped:
        # inside the VM everything the suite needs is there: a skip proves nothing
        pytest.fail("skipped in the VM: " + "; ".join(f"{n}: {t}" for n, _, t in skipped),
                    pytrace=False)


async def test_no_ipvs_on_this_host_is_a_clear_error() -> None:
    """On a host kernel without IPVS the data plane says so in one line (no traceback)."""
    from lvsd.dataplane.base import DataPlaneUnavailable
    from lvsd.dataplane.ipvs import UNAVAILABLE, IPVSDataPlane, probe

    if Path("/proc/net/ip_vs").exists():
        pytest.skip("this host kernel has IPVS: the unavailable path cannot be shown here")
    if os.geteuid() != 0:
        require("needs root to open generic netlink the way the daemon does")

    assert await probe() == UNAVAILABLE
    dp = IPVSDataPlane()
    with pytest.raises(DataPlaneUnavailable) as ei:
        await dp.dump()
    assert str(ei.value) == UNAVAILABLE
    assert "\n" not in str(ei.value)
    await dp.close()
