"""Why VRRP runs in a process of its own: how late a 10 ms timer (an advert timer) fires while
the rest of lvsd does its heavy work, for three execution models.

    .venv/bin/python bench/loop_isolation.py [--rs 20000]

Work done by "the rest of lvsd" (the main thread), one after the other: loading a config with
``--rs`` real servers (the lvsd loader and preflight), rendering a status document of that
size as JSON, a full garbage collection of a heap of ~1.5 M objects. The timer runs:

* ``same loop``   - as lvsd did before: a task on the loop that does the work;
* ``thread``      - on an event loop of its own in a second thread of the same process;
* ``process``     - on an event loop in a child process (what ``lvsd run`` does now).

Prints the timer's worst and p99 lateness per model and the ratio to the process model. The
thread is starved whenever the main thread holds the global interpreter lock for long (a C
call: ``json.dumps``, a GC pass); the process only by the kernel's scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from config_load import generate

PERIOD = 0.01


async def _timer(stop: Callable[[], bool], late: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop():
        due = loop.time() + PERIOD
        await asyncio.sleep(PERIOD)
        late.append(loop.time() - due)


def _thread_timer(flag: threading.Event, late: list[float]) -> None:
    asyncio.run(_timer(flag.is_set, late))


def _process_timer(conn: Connection) -> None:
    late: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), stop.set)
        await _timer(stop.is_set, late)

    asyncio.run(main())
    conn.recv()
    conn.send(late)


def heavy_work(conf: Path) -> None:
    from lvsd.config.loader import load
    from lvsd.preflight import preflight

    cfg = load(str(conf))
    preflight(cfg, mode="check-only", dataplane="memory", strict=False, vrrp_transport="raw",
              nft_table="lvsd")
    n = sum(len(v.real_servers) for v in cfg.virtual_servers)
    doc = [{"address": f"10.0.{i >> 8}.{i & 255}", "port": 80, "alive": True, "weight": 1,
            "checkers": [{"kind": "TCP_CHECK", "up": True, "latency": 0.001}]}
           for i in range(n * 4)]
    json.dumps(doc)
    heap = [{"a": [i, str(i)], "b": (i,)} for i in range(500_000)]
    gc.collect()
    del heap, doc


def stats(late: list[float]) -> tuple[float, float]:
    s = sorted(late)
    return s[-1], s[int(len(s) * 0.99)]


def run_same_loop(conf: Path) -> list[float]:
    late: list[float] = []

    async def main() -> None:
        done = False
        t = asyncio.create_task(_timer(lambda: done, late))
        await asyncio.sleep(0.2)
        heavy_work(conf)  # on the loop, as the old daemon parsed a reload or rendered status
        await asyncio.sleep(0.05)
        done = True
        await t

    asyncio.run(main())
    return late


def run_thread(conf: Path) -> list[float]:
    late: list[float] = []
    flag = threading.Event()
    th = threading.Thread(target=_thread_timer, args=(flag, late))
    th.start()
    time.sleep(0.2)
    heavy_work(conf)
    time.sleep(0.05)
    flag.set()
    th.join()
    return late


def run_process(conf: Path) -> list[float]:
    parent, child = mp.Pipe()
    p = mp.get_context("fork").Process(target=_process_timer, args=(child,))
    p.start()
    time.sleep(0.3)
    heavy_work(conf)
    time.sleep(0.05)
    parent.send("stop")
    late: list[float] = parent.recv()
    p.join()
    return late


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rs", type=int, default=20_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        conf = Path(d) / "big.conf"
        generate(conf, max(1, a.rs // 100), a.rs)
        results = {"same loop": run_same_loop(conf), "thread": run_thread(conf),
                   "process": run_process(conf)}
    base_max, _ = stats(results["process"])
    print(f"10 ms timer lateness while the main thread loads {a.rs} real servers, renders "
          f"their status as JSON and runs a full GC:")
    for name, late in results.items():
        worst, p99 = stats(late)
        print(f"  {name:10s} worst {worst * 1e3:8.1f} ms  p99 {p99 * 1e3:7.1f} ms  "
              f"({len(late)} ticks)  worst vs process: {worst / max(base_max, 1e-4):6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
