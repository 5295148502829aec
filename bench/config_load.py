"""Benchmark: load a keepalived.conf with 2,300 virtual servers and 37,000 real servers
(TCP_CHECK each; the size keepalived's release notes use for reload timing).

Prints lvsd's load time and peak memory (each measured in a fresh child process so the
numbers are not polluted by the generator), then ``keepalived -t -f FILE`` on the same
file in the same run and the ratio, when keepalived is installed.

    .venv/bin/python bench/config_load.py [--vs 2300] [--rs 37000] [--repeat 3] [--tracemalloc]

``--preflight`` also times the checks ``lvsd check-config`` runs after the load (the trial plan,
the data plane's refusals, the host checks) and prints that ratio too: ``keepalived -t`` does
all of it.

``--scaling N`` instead loads one virtual server with N/4, N/2 and N real servers and prints the
time per 1,000 real servers of each: about equal when the load is linear in real servers (the
duplicate check of one virtual server's real servers was once quadratic: 16 s for 18,000).

    .venv/bin/python bench/config_load.py --scaling 18000 [--repeat 3]

``--instructions`` also counts the instructions each side executes (valgrind's cachegrind, when
installed): lvsd's load (its process with the load less the same process without it, so the
imports are not counted) and the whole ``keepalived -t`` run. Unlike CPU seconds this figure
does not move with the load of a shared machine; it takes a few minutes at the default size.

keepalived 2.2.7 ``-t`` reads the file in one process (no child: checked with ``strace -f``);
its CPU is taken from ``RUSAGE_CHILDREN`` around each run, which would include any child it
waited for. The ratios compare lvsd's load CPU (``time.process_time()`` around ``load()``, in a
fresh process) with that.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, tracemalloc
from lvsd.config.loader import load
path, mode = sys.argv[1], sys.argv[2]
if mode == "trace":
    tracemalloc.start()
t0, c0 = time.perf_counter(), time.process_time()
cfg = load(path, config_id="bench")
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = tracemalloc.get_traced_memory()[1] if mode == "trace" else 0
pf_dt = pf_cpu = 0.0
if mode == "preflight":  # what `lvsd check-config` (and `lvsd run`) does after the load
    from lvsd.preflight import preflight
    t0, c0 = time.perf_counter(), time.process_time()
    preflight(cfg)
    pf_dt, pf_cpu = time.perf_counter() - t0, time.process_time() - c0
n_rs = sum(len(v.real_servers) for v in cfg.virtual_servers)
print(json.dumps({"seconds": dt, "cpu": cpu, "tracemalloc_peak": peak,
                  "preflight_seconds": pf_dt, "preflight_cpu": pf_cpu,
                  "vs": len(cfg.virtual_servers), "rs": n_rs, "diagnostics": len(cfg.diagnostics),
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def generate(path: Path, n_vs: int, n_rs: int) -> None:
    per, extra = divmod(n_rs, n_vs)
    with path.open("w") as fh:
        fh.write("global_defs {\n    router_id bench\n}\n\n")
        fh.write("vrrp_instance VI_1 {\n    state MASTER\n    interface eth0\n"
                 "    virtual_router_id 51\n    priority 150\n    virtual_ipaddress {\n"
                 "        10.0.0.1/16\n    }\n}\n\n")
        rs_no = 0
        for v in range(n_vs):
            vip = f"10.{(v >> 8) & 0xFF}.{v & 0xFF}.1" if v >= 256 else f"10.200.{v}.1"
            fh.write(f"virtual_server {vip} 80 {{\n    delay_loop 10\n    lb_algo wrr\n"
                     "    lb_kind NAT\n    protocol TCP\n\n")
            for _ in range(per + (1 if v < extra else 0)):
                rs_no += 1
                ip = f"172.{16 + (rs_no >> 16)}.{(rs_no >> 8) & 0xFF}.{rs_no & 0xFF}"
                fh.write(f"    real_server {ip} 8080 {{\n        weight 1\n"
                         "        TCP_CHECK {\n            connect_timeout 3\n"
                         "            retry 2\n            delay_before_retry 2\n"
                         "        }\n    }\n")
            fh.write("}\n\n")


def instructions(cmd: list[str], cwd: str) -> int:
    """The instructions ``cmd`` executes (cachegrind's ``I refs``, all its processes)."""
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
                          "--cachegrind-out-file=/dev/null", *cmd], capture_output=True,
                         text=True, check=False, timeout=3600, cwd=cwd)
    refs = [int(ln.rsplit(":", 1)[1].replace(",", "")) for ln in out.stderr.splitlines()
            if "I   refs:" in ln]
    if not refs:
        raise RuntimeError(f"no instruction count from valgrind: {out.stderr[-500:]}")
    return sum(refs)


def instruction_ratio(path: Path, ka: str, cwd: str) -> None:
    lvsd = [sys.executable, "-c", "import sys\nfrom lvsd.config.loader import load\n"
            "if sys.argv[2] == '1':\n    load(sys.argv[1], config_id='bench')", str(path)]
    lvsd_ir = instructions([*lvsd, "1"], cwd) - instructions([*lvsd, "0"], cwd)
    ka_ir = instructions([ka, "-t", "-f", str(path)], cwd)
    print(f"instructions (cachegrind): lvsd load {lvsd_ir / 1e9:.2f} G, keepalived -t "
          f"{ka_ir / 1e9:.2f} G; ratio {lvsd_ir / ka_ir:.2f}")


def run_child(path: Path, mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True,
                         text=True, check=True, timeout=600)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def scaling(n_rs: int, repeat: int) -> int:
    """One virtual server with n_rs/4, n_rs/2 and n_rs real servers: time per 1,000."""
    per_k = []
    with tempfile.TemporaryDirectory(prefix="lvsd-bench-") as tmp:
        for n in (n_rs // 4, n_rs // 2, n_rs):
            path = Path(tmp) / f"one-vs-{n}.conf"
            generate(path, 1, n)
            runs = [run_child(path, "time") for _ in range(repeat)]
            assert runs[0]["vs"] == 1 and runs[0]["rs"] == n, runs[0]
            cpu = statistics.median(r["cpu"] for r in runs)
            per_k.append(cpu / n * 1000)
            print(f"1 virtual server, {n:6d} real servers: median {cpu:.2f} s CPU "
                  f"({per_k[-1] * 1000:.1f} ms per 1,000 real servers) over {repeat} runs")
    print(f"time per real server at {n_rs} / at {n_rs // 4}: {per_k[-1] / per_k[0]:.2f} "
          "(1.0: linear; 4.0 would be quadratic)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--vs", type=int, default=2300)
    ap.add_argument("--rs", type=int, default=37000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tracemalloc", action="store_true",
                    help="also report the peak Python heap (slow: ~5x load time)")
    ap.add_argument("--preflight", action="store_true",
                    help="also time the preflight after the load (lvsd check-config = both) "
                         "and give that ratio too")
    ap.add_argument("--instructions", action="store_true",
                    help="also compare instruction counts (valgrind cachegrind; minutes)")
    ap.add_argument("--scaling", type=int, metavar="N",
                    help="one virtual server with N/4, N/2, N real servers: is load linear?")
    args = ap.parse_args()
    if args.scaling:
        return scaling(args.scaling, args.repeat)
    with tempfile.TemporaryDirectory(prefix="lvsd-bench-") as tmp:
        path = Path(tmp) / "keepalived.conf"
        generate(path, args.vs, args.rs)
        size = path.stat().st_size
        lines = sum(1 for _ in path.open())
        print(f"config: {args.vs} virtual servers, {args.rs} real servers (TCP_CHECK each), "
              f"{lines} lines, {size / 1e6:.1f} MB")
        runs = [run_child(path, "preflight" if args.preflight else "time")
                for _ in range(args.repeat)]
        first = runs[0]
        assert first["vs"] == args.vs and first["rs"] == args.rs, first
        lvsd_s = statistics.median(r["seconds"] for r in runs)
        lvsd_cpu = statistics.median(r["cpu"] for r in runs)
        print(f"lvsd load: median {lvsd_s:.2f} s wall, {lvsd_cpu:.2f} s CPU over {args.repeat} "
              f"runs (wall {', '.join(format(r['seconds'], '.2f') for r in runs)}), "
              f"{first['diagnostics']} diagnostics")
        print(f"lvsd peak RSS of the loading process: {first['maxrss_kib'] / 1024:.0f} MiB")
        pf_s = statistics.median(r["preflight_seconds"] for r in runs)
        pf_cpu = statistics.median(r["preflight_cpu"] for r in runs)
        if args.preflight:
            print(f"lvsd preflight (check-config's checks after the load): median {pf_s:.2f} s "
                  f"wall, {pf_cpu:.2f} s CPU")
        if args.tracemalloc:
            traced = run_child(path, "trace")
            print(f"lvsd peak Python heap (tracemalloc): "
                  f"{traced['tracemalloc_peak'] / 2**20:.0f} MiB "
                  f"(load under tracemalloc took {traced['seconds']:.2f} s)")
        ka = shutil.which("keepalived") or "/usr/sbin/keepalived"
        if not Path(ka).exists():
            print("keepalived -t: not installed - no ratio")
            return 0
        ka_runs = []
        ka_cpu = []
        rc = 0
        for _ in range(args.repeat):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run([ka, "-t", "-f", str(path)], capture_output=True, text=True,
                                  timeout=600, check=False, cwd=tmp)
            ka_runs.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            ka_cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
            rc = proc.returncode
        noise = [ln for ln in proc.stderr.splitlines() if ln.strip()][:3]
        ka_s = statistics.median(ka_runs)
        ka_c = statistics.median(ka_cpu)
        print(f"keepalived -t: median {ka_s:.2f} s wall, {ka_c:.2f} s CPU (all its processes) "
              f"over {args.repeat} runs (exit {rc}"
              + (f"; first messages: {noise}" if noise else "") + ")")
        print(f"ratio lvsd/keepalived -t: {lvsd_s / ka_s:.2f} wall, "
              f"{lvsd_cpu / max(ka_c, 1e-6):.2f} CPU")
        if args.preflight:
            print(f"ratio lvsd load+preflight/keepalived -t: {(lvsd_s + pf_s) / ka_s:.2f} wall, "
                  f"{(lvsd_cpu + pf_cpu) / max(ka_c, 1e-6):.2f} CPU")
        if args.instructions:
            if shutil.which("valgrind") is None:
                print("instructions: valgrind not installed - no count")
            else:
                instruction_ratio(path, ka, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
