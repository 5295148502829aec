"""Fixtures for the suite that runs INSIDE the IPVS VM (see tests/kernel/test_ipvs_vm.py).

Every test starts and ends with an empty kernel IPVS table (``ipvsadm -C``), so tests are
independent; ``ipvsadm`` is Debian's binary, used as an independent witness of what the kernel
holds and as the "operator typing commands by hand".
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from vmutil import ipvsadm

from lvsd.dataplane.ipvs import IPVSDataPlane

if os.environ.get("LVSD_VM") != "1" or not os.path.exists("/proc/net/ip_vs"):
    pytest.exit("tests/kernel/guest runs inside the IPVS VM only (tests/kernel/test_ipvs_vm.py "
                "boots it)", returncode=3)


@pytest.fixture(autouse=True)
def _clean_ipvs() -> Iterator[None]:
    ipvsadm("-C")
    yield
    ipvsadm("-C")


@pytest.fixture
async def ipvs() -> AsyncIterator[IPVSDataPlane]:
    dp = IPVSDataPlane()
    await dp.open()
    yield dp
    await dp.close()
