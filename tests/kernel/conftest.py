"""Kernel IPVS layer: host-side tests boot the VM once and report the guest suite's results.

``guest/`` holds the suite that runs *inside* the VM (it needs kernel IPVS); it is collected
only there (the VM harness exports ``LVSD_VM=1``), never by a normal host run.
"""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("LVSD_VM") == "1" else ["guest"]
