"""Run inside the director namespace: reconcile the nftables data plane to a JSON table.

stdin: {"table": NAME, "services": [{"addr", "port", "proto", "sched", "flags": [],
        "dests": [[addr, port, weight], ...]}]}
stdout: {"ops": [...applied op descriptions...], "failed": [...], "dump": {...}}
Each run is a fresh process (a restart): the reconciler adopts what the table holds.
"""

from __future__ import annotations

import asyncio
import json
import sys

from lvsd.dataplane.nftables import NftablesDataPlane
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.table import DestKey, DestSpec, ServiceEntry, ServiceKey, ServiceSpec, describe


async def main() -> None:
    req = json.load(sys.stdin)
    dp = NftablesDataPlane(req["table"])
    desired = {}
    for s in req["services"]:
        key = ServiceKey.for_addr(s["addr"], s["port"], s["proto"])
        dests = {DestKey(a, p): DestSpec(DestKey(a, p), w) for a, p, w in s["dests"]}
        desired[key] = ServiceEntry(ServiceSpec(key, s["sched"], frozenset(s.get("flags", []))),
                                    dests)
    rec = Reconciler(dp, retry_wait=0.01)
    rec.set_desired(desired)
    res = await rec.start()
    await rec.stop()
    dump = await dp.dump()
    print(json.dumps({
        "ops": [describe(op) for op in res.ops],
        "failed": [f"{a.op}: {a.error}" for a in res.failed],
        "transactions": dp.transactions,
        "dump": {str(k): {str(d): v.weight for d, v in e.dests.items()} for k, e in dump.items()},
    }))


asyncio.run(main())
