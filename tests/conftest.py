"""Suite-wide fixtures and the capability gate for the test layers.

Layers needing privileges (netns, interop, kernel) check what they need before running. Outside
CI a missing capability skips with the reason; under CI (``CI=true``) it FAILS, because a layer
that skips in CI proves nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# tests/kernel/guest runs INSIDE the IPVS VM only (the harness exports LVSD_VM=1; see
# tests/kernel/test_ipvs_vm.py). Ignored here rather than by a tests/kernel/conftest.py: a second
# top-level "conftest" module would shadow this one for ``from conftest import require``.
collect_ignore = [] if os.environ.get("LVSD_VM") == "1" else ["kernel/guest"]


def missing_capability(marker: str) -> str | None:
    if marker in ("netns", "interop", "kernel") and os.geteuid() != 0:
        return "needs root"
    if marker in ("netns", "interop") and shutil.which("ip") is None:
        return "needs iproute2"
    if marker == "interop" and shutil.which("keepalived") is None:
        return "needs keepalived (apt-get install keepalived)"
    if marker == "kernel" and shutil.which("qemu-system-x86_64") is None:
        return "needs qemu-system-x86 for the IPVS VM"
    return None


def require(reason: str | None) -> None:
    """Skip locally / fail in CI when ``reason`` is set."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"required capability missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _capability_gate(request: pytest.FixtureRequest) -> None:
    for marker in ("netns", "interop", "kernel"):
        if request.node.get_closest_marker(marker) is not None:
            require(missing_capability(marker))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        require(f"{SHARED} not found (CI puts shared/ beside the clone)")
    return SHARED


def pytest_sessionstart(session: pytest.Session) -> None:
    # namespaces left by a crashed earlier run would only confuse this one (CI only: on a
    # developer machine other people's test runs may be using theirs right now)
    if (IN_CI and not os.environ.get("LVSD_KEEP_STALE_NS") and os.geteuid() == 0
            and shutil.which("ip")):
        from lvsd.lab.netns import cleanup_stale

        cleanup_stale("lt-")
