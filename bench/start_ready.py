#!/usr/bin/env python3
"""Benchmark: ``lvsd run`` from exec to READY, and ``lvsd check-config``; keepalived as peer.

    .venv/bin/python bench/start_ready.py [--trials 10] [--config FILE] [--vm [--smp 2]]
                                          [--src DIR] [--baseline-src DIR]

A small config (one ``vrrp_instance`` on ``eth0``, one virtual server with two TCP_CHECK real
servers; ``--config`` for another one written for that interface) runs in a network namespace
the bench creates (``eth0`` one end of a veth pair, 10.0.0.2/24), N times each, alternately:

* ``lvsd run -f FILE -p PIDFILE`` as shipped (status endpoint on its default address,
  VRRP child process, syslog or stderr as lvsd picks), ``--dataplane memory`` where the kernel
  has no IPVS (on the host; in the VM the default ``ipvs``). Timed from just before the exec
  (``ip netns exec``) until ``READY=1`` arrives on a ``$NOTIFY_SOCKET`` datagram socket the
  bench owns (sd_notify, lvsd.daemon.sdnotify). CPU = utime+stime of lvsd and its children
  (the VRRP child) read from /proc at that moment.
* ``keepalived -n -l -f FILE`` (2.2.7) timed to its log line "Startup complete" (keepalived
  core/config_notify.c logs it where it sends READY=1 to systemd; it sends that only when
  its parent is systemd, lib/systemd.c, so the log line is the mark) and to "Entering BACKUP
  STATE". On a host without IPVS keepalived's checker process exits (FATAL, and takes the
  whole keepalived down), so there keepalived runs ``-P`` (VRRP only): it then does less
  than lvsd, which the ratio overstates against lvsd.
* ``lvsd check-config -f FILE`` (host checks included: the namespace has the interface)
  against ``keepalived -t -f FILE``: wall and CPU (rusage of the child).

Ratios are lvsd / keepalived of the medians; the first trial (cold caches) is shown apart.
``--baseline-src DIR`` also times lvsd from another source tree's ``src`` (``PYTHONPATH``;
e.g. ``git archive HEAD src | tar -x -C /tmp/base`` before a change), interleaved with the
others, for a before/after figure from the same run.
The load average is printed before and after: the machine is shared, so wall-clock figures
move with it; the CPU figures less so.

``--vm`` boots the throw-away IPVS VM once (``lab/ipvs-vm``, qemu TCG: software emulation,
several times slower than hardware; the goal there is READY <= 2 s) and runs the same inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LVSD = [sys.executable, "-m", "lvsd.cli"] if not (Path(sys.executable).parent / "lvsd").exists() \
    else [str(Path(sys.executable).parent / "lvsd")]
CLK = os.sysconf("SC_CLK_TCK")

SMALL = """\
global_defs {
   router_id lt_start_ready
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 41
    priority 100
    advert_int 1
    virtual_ipaddress {
        10.0.0.150
    }
}

virtual_server 10.0.0.150 80 {
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.0.0.11 80 {
        weight 1
        TCP_CHECK {
            connect_port 80
            connect_timeout 5
        }
    }
    real_server 10.0.0.12 80 {
        weight 1
        TCP_CHECK {
            connect_port 80
            connect_timeout 5
        }
    }
}
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def make_ns() -> str:
    ns = f"ltsr{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        for dev in ("eth0", "eth1"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "addr", "add", "10.0.0.2/24", "dev", "eth0")
    except BaseException:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        raise
    return ns


def has_ipvs() -> bool:
    return Path("/proc/net/ip_vs").exists()


def task_cpu(task: Path) -> float:
    """CPU seconds of one thread: the scheduler's sum_exec_runtime (ms, microsecond precision)
    where the kernel shows it, else utime+stime in clock ticks (10 ms: keepalived would read
    0)."""
    try:
        for line in (task / "sched").read_text().splitlines():
            if line.startswith("se.sum_exec_runtime"):
                return float(line.split(":")[1]) / 1e3
    except FileNotFoundError:
        pass
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (alive ones, every thread), from /proc."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                total += task_cpu(task)
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def src_env(src: str | None) -> dict[str, str]:
    """The environment that runs lvsd from ``src`` (a source tree's ``src``; None: ours)."""
    return dict(os.environ, PYTHONPATH=src) if src else dict(os.environ)


def lvsd_trial(ns: str, conf: Path, tmp: Path, dataplane: str | None,
               src: str | None) -> tuple[float, float]:
    """Seconds from exec to READY=1, and CPU seconds of lvsd + its children at READY."""
    path = tmp / "notify.sock"
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    log = tmp / "lvsd.log"
    env = dict(src_env(src), NOTIFY_SOCKET=str(path))
    argv = ["ip", "netns", "exec", ns, *LVSD, "run", "-f", str(conf), "-p", str(tmp / "lvsd.pid")]
    if dataplane:
        argv += ["--dataplane", dataplane]
    try:
        with log.open("wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out,
                                    stdin=subprocess.DEVNULL)
        try:
            deadline = t0 + 120
            while True:
                left = deadline - time.perf_counter()
                if left <= 0 or proc.poll() is not None:
                    raise RuntimeError(f"lvsd: no READY (rc {proc.poll()}):\n"
                                       f"{log.read_text()[-3000:]}")
                r, _, _ = select.select([sock], [], [], min(left, 0.5))
                if r and b"READY=1" in sock.recv(4096).split(b"\n"):
                    wall = time.perf_counter() - t0
                    return wall, proc_tree_cpu(proc.pid)
        finally:
            stop(proc)
    finally:
        sock.close()


def keepalived_trial(ns: str, conf: Path, tmp: Path, vrrp_only: bool
                     ) -> tuple[float, float, float]:
    """Seconds from exec to "Startup complete", to the first "Entering BACKUP STATE", and
    the CPU seconds of keepalived + children at "Startup complete"."""
    argv = ["ip", "netns", "exec", ns, "keepalived", "-n", "-l", "-G", "-f", str(conf),
            "-p", str(tmp / "k.pid"), "-r", str(tmp / "k-vrrp.pid"), "-c", str(tmp / "k-chk.pid")]
    if vrrp_only:
        argv.append("-P")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    lines: list[bytes] = []
    ready = backup = cpu = 0.0
    try:
        deadline = t0 + 120
        while not (ready and backup):
            if time.perf_counter() > deadline:
                raise RuntimeError("keepalived: no 'Startup complete'")
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError("keepalived exited:\n" + b"".join(lines).decode()[-3000:])
            lines.append(line)
            now = time.perf_counter() - t0
            if not ready and b"Startup complete" in line:
                ready, cpu = now, proc_tree_cpu(proc.pid)
            if not backup and b"Entering BACKUP STATE" in line:
                backup = now
        return ready, backup, cpu
    finally:
        stop(proc)
        proc.stderr.close()


def timed_child(argv: Sequence[str], env: dict[str, str] | None = None
                ) -> tuple[float, float, int]:
    """Wall and CPU seconds (rusage) of one command, and its exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env=env, check=False).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc


def run_all(trials: int, conf_text: str, src: str | None, baseline: str | None
            ) -> dict[str, object]:
    res: dict[str, object] = {"load_before": os.getloadavg(), "ipvs": has_ipvs()}
    ns = make_ns()
    tmp = Path(tempfile.mkdtemp(prefix="lvsd-start-"))
    try:
        conf = tmp / "keepalived.conf"
        conf.write_text(conf_text)
        dataplane = None if has_ipvs() else "memory"
        vrrp_only = not has_ipvs()
        res["lvsd_dataplane"] = dataplane or "ipvs"
        res["keepalived_mode"] = "-P (VRRP only)" if vrrp_only else "full"
        # the namespace wrapper alone (both sides pay it)
        res["netns_exec"] = [timed_child(["ip", "netns", "exec", ns, "true"])[0]
                             for _ in range(3)]
        ready: list[tuple[float, float]] = []
        bready: list[tuple[float, float]] = []
        kready: list[tuple[float, float, float]] = []
        lcheck: list[tuple[float, float, int]] = []
        bcheck: list[tuple[float, float, int]] = []
        kcheck: list[tuple[float, float, int]] = []
        check = ["ip", "netns", "exec", ns, *LVSD, "check-config", "-f", str(conf)]
        for i in range(trials):  # interleaved: a change of load hits every column alike
            ready.append(lvsd_trial(ns, conf, tmp, dataplane, src))
            time.sleep(0.2)
            if baseline:
                bready.append(lvsd_trial(ns, conf, tmp, dataplane, baseline))
                time.sleep(0.2)
            kready.append(keepalived_trial(ns, conf, tmp, vrrp_only))
            time.sleep(0.2)
            lcheck.append(timed_child(check, src_env(src)))
            if baseline:
                bcheck.append(timed_child(check, src_env(baseline)))
            kcheck.append(timed_child(["ip", "netns", "exec", ns, "keepalived", "-t",
                                       "-f", str(conf)]))
            print(f"  trial {i + 1}/{trials}: lvsd READY {ready[-1][0]:.3f} s"
                  + (f" (baseline {bready[-1][0]:.3f} s)" if baseline else "")
                  + f", keepalived {kready[-1][0]:.3f} s; check-config {lcheck[-1][0]:.3f} s, "
                  f"keepalived -t {kcheck[-1][0]:.3f} s", file=sys.stderr, flush=True)
        bad = [c for c in lcheck + bcheck + kcheck if c[2] != 0]
        if bad:
            raise RuntimeError(f"a config check failed: {bad[:2]}")
        res.update(lvsd_ready=ready, keepalived_ready=kready, lvsd_check=lcheck,
                   keepalived_check=kcheck, load_after=os.getloadavg())
        if baseline:
            res.update(baseline_ready=bready, baseline_check=bcheck, baseline=baseline)
        return res
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def report(res: dict[str, object], where: str) -> None:
    def col(key: str, i: int) -> list[float]:
        rows = res[key]
        assert isinstance(rows, list)
        return [float(r[i]) for r in rows]

    def med(key: str, i: int) -> float:
        v = col(key, i)
        return statistics.median(v[1:] if len(v) > 2 else v)

    def line(label: str, key: str, i: int, unit: Callable[[float], str]) -> str:
        v = col(key, i)
        rest = v[1:] if len(v) > 2 else v
        return (f"  {label:34s} median {unit(med(key, i))}  min {unit(min(rest))}  "
                f"max {unit(max(rest))}  (first, cold: {unit(v[0])})")

    def ms(x: float) -> str:
        return f"{x * 1e3:7.1f} ms"

    netns = res["netns_exec"]
    assert isinstance(netns, list)
    print(f"== start to READY and check-config, {where}: {len(col('lvsd_ready', 0))} trials; "
          f"load average before {fmt_load(res['load_before'])}, after "
          f"{fmt_load(res['load_after'])}")
    print(f"   lvsd --dataplane {res['lvsd_dataplane']}; keepalived {res['keepalived_mode']}; "
          f"'ip netns exec NS true' alone {ms(statistics.median(netns))} (in every figure)")
    print(line("lvsd run: exec -> READY=1", "lvsd_ready", 0, ms))
    print(line("  CPU (lvsd + VRRP child)", "lvsd_ready", 1, ms))
    if "baseline_ready" in res:
        print(f"  baseline: lvsd from {res['baseline']}")
        print(line("  baseline: exec -> READY=1", "baseline_ready", 0, ms))
        print(line("    CPU (lvsd + VRRP child)", "baseline_ready", 1, ms))
    print(line("keepalived: -> 'Startup complete'", "keepalived_ready", 0, ms))
    print(line("keepalived: -> 'Entering BACKUP'", "keepalived_ready", 1, ms))
    print(line("  CPU (keepalived + children)", "keepalived_ready", 2, ms))
    print(line("lvsd check-config", "lvsd_check", 0, ms))
    print(line("  CPU", "lvsd_check", 1, ms))
    if "baseline_check" in res:
        print(line("  baseline: check-config", "baseline_check", 0, ms))
        print(line("    CPU", "baseline_check", 1, ms))
    print(line("keepalived -t", "keepalived_check", 0, ms))
    print(line("  CPU", "keepalived_check", 1, ms))
    print(f"  ratio lvsd/keepalived: READY {med('lvsd_ready', 0) / med('keepalived_ready', 0):.1f}"
          f" (CPU {med('lvsd_ready', 1) / max(med('keepalived_ready', 2), 1e-4):.0f}), "
          f"check-config {med('lvsd_check', 0) / med('keepalived_check', 0):.1f} "
          f"(CPU {med('lvsd_check', 1) / max(med('keepalived_check', 1), 1e-4):.0f})")
    if "baseline_ready" in res:
        print(f"  baseline/lvsd: READY {med('baseline_ready', 0) / med('lvsd_ready', 0):.2f}x "
              f"(CPU {med('baseline_ready', 1) / med('lvsd_ready', 1):.2f}x), check-config "
              f"{med('baseline_check', 0) / med('lvsd_check', 0):.2f}x "
              f"(CPU {med('baseline_check', 1) / med('lvsd_check', 1):.2f}x)")


def fmt_load(v: object) -> str:
    assert isinstance(v, (list, tuple))
    return " ".join(f"{float(x):.2f}" for x in v)


def compile_trees(args: argparse.Namespace) -> None:
    """Bytecode for the trees timed, next to their sources, as an installed package has it
    (with $PYTHONDONTWRITEBYTECODE, or in the VM, whose guest writes none, every start would
    compile what changed since: tests/kernel/test_ipvs_vm.py does the same)."""
    trees = [args.src or str(REPO / "src")] + ([args.baseline_src] if args.baseline_src else [])
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *trees],
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                   check=True, capture_output=True, timeout=600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--config", type=Path, help="a config for interface eth0 (default: built in)")
    ap.add_argument("--vm", action="store_true", help="also run inside the IPVS VM")
    ap.add_argument("--smp", type=int, default=2, help="vCPUs of the VM (default 2)")
    ap.add_argument("--vm-trials", type=int, default=5)
    ap.add_argument("--src", metavar="DIR",
                    help="time lvsd from this source tree's src/ (default: the installed one); "
                         "a copy keeps a VM run apart from edits made meanwhile")
    ap.add_argument("--baseline-src", metavar="DIR",
                    help="also time lvsd from this source tree's src/ (e.g. a 'git archive' of "
                         "an older commit), interleaved, for a before/after figure")
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("keepalived") is None:
        print("needs keepalived (the peer)", file=sys.stderr)
        return 1
    text = args.config.read_text() if args.config else SMALL
    if args.in_vm:
        res = run_all(args.trials, text, args.src, args.baseline_src)
        Path(os.environ["LVSD_VM_OUT"], "bench.json").write_text(json.dumps(res))
        return 0
    compile_trees(args)
    print(f"command: lvsd run -f FILE -p PIDFILE [--dataplane memory]  (lvsd = {' '.join(LVSD)}"
          + (f", from {args.src}" if args.src else "") + ")")
    report(run_all(args.trials, text, args.src, args.baseline_src), "host")
    if not args.vm:
        return 0
    sys.path.insert(0, str(REPO / "tests" / "support"))  # the VM harness (not shipped)
    import ipvsvm

    why = ipvsvm.missing()
    if why:
        print(f"VM part skipped: {why}")
        return 1
    compile_trees(args)
    with tempfile.TemporaryDirectory(prefix="lvsd-bench-") as out:
        t0 = time.perf_counter()
        argv = [sys.executable, str(Path(__file__).resolve()), "--in-vm",
                "--trials", str(args.vm_trials)]
        if args.config:
            argv += ["--config", str(args.config.resolve())]
        if args.baseline_src:
            argv += ["--baseline-src", args.baseline_src]
        if args.src:
            argv += ["--src", args.src]
        vm = ipvsvm.run(argv, out=Path(out), cwd=REPO, smp=args.smp, timeout=1500)
        wall = time.perf_counter() - t0
        f = Path(out, "bench.json")
        if vm.returncode != 0 or not f.is_file():
            print(f"VM run failed (rc {vm.returncode}):\n{vm.output[-3000:]}\n{vm.stderr[-2000:]}")
            return 1
        report(json.loads(f.read_text()), f"IPVS VM (qemu TCG, smp {args.smp}; VM wall "
                                          f"{wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
