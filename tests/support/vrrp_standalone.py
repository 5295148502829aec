"""Test harness: VRRP runners only, no daemon (``python tests/support/vrrp_standalone.py``).

Not shipped (operators run ``lvsd run --vrrp-only``). It exists for what the daemon does not
expose: each runner's raw status (transport, counters, GARP and VMAC details) and one instance
built from command-line options without a file. ``tests/support/testlab.py`` (``LvsdNode``)
starts it inside lab namespaces.

Either a keepalived-style file (``-f CONF``: every vrrp_instance and vrrp_sync_group in it,
loaded by ``lvsd.config.loader`` and turned into runners by ``lvsd.daemon.vrrpset``, exactly as
``lvsd run`` does) or one instance from the command line (``--interface eth0 --vrid 51
--priority 150 --vip 192.0.2.100/24 ...``). SIGTERM/SIGINT stop gracefully (priority 0 + VIP
removal); each state change is printed as ``STATE <instance> <state> <reason>`` and, with
``--state-file``, the current state of each instance is written there (``<instance> <state>``
lines) and the full runner status (counters included) to ``<state-file>.json``, on every
change, on SIGUSR1 and at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from ipaddress import ip_address
from typing import Any

from lvsd.vrrp.codec import AuthType
from lvsd.vrrp.notify import Notifier, ScriptSpec
from lvsd.vrrp.params import TrackedInterface, VrrpParams
from lvsd.vrrp.runner import InstanceSpec, VrrpRunner
from lvsd.vrrp.vips import Vip


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vrrp_standalone.py",
                                 description="Run VRRP instances only (no IPVS, no checks).")
    ap.add_argument("-f", "--config", help="keepalived-style configuration file")
    ap.add_argument("--name", default="VI_1")
    ap.add_argument("--interface", "-i", default="eth0")
    ap.add_argument("--vrid", type=int, default=51)
    ap.add_argument("--priority", type=int, default=100)
    ap.add_argument("--advert-int", type=float, default=1.0)
    ap.add_argument("--version", type=int, choices=(2, 3), default=2)
    ap.add_argument("--vip", action="append", default=[], help="ADDR[/PREFIX], repeatable")
    ap.add_argument("--state", choices=("MASTER", "BACKUP"))
    ap.add_argument("--nopreempt", action="store_true")
    ap.add_argument("--preempt-delay", type=float, default=0.0)
    ap.add_argument("--auth-pass")
    ap.add_argument("--unicast-peer", action="append", default=[])
    ap.add_argument("--unicast-src-ip")
    ap.add_argument("--check-unicast-src", action="store_true")
    ap.add_argument("--garp-master-delay", type=float, default=5.0)
    ap.add_argument("--garp-master-repeat", type=int, default=5)
    ap.add_argument("--notify", help="notify script (gets TYPE NAME STATE PRIORITY)")
    ap.add_argument("--notify-fifo")
    ap.add_argument("--transport", choices=("raw", "udp"), default="raw",
                    help="udp is an lvsd extension, not understood by keepalived")
    ap.add_argument("--udp-port", type=int, default=5798)
    ap.add_argument("--state-file")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def specs_from_args(a: argparse.Namespace) -> list[InstanceSpec]:
    vips = []
    for v in a.vip:
        addr, _, plen = v.partition("/")
        ip = ip_address(addr)
        vips.append(Vip(str(ip), int(plen) if plen else (32 if ip.version == 4 else 128)))
    params = VrrpParams(
        name=a.name, vrid=a.vrid, priority=a.priority, advert_int=a.advert_int,
        version=a.version, addresses=tuple(ip_address(v.address) for v in vips),
        initial_state=a.state, preempt=not a.nopreempt, preempt_delay=a.preempt_delay,
        auth_type=AuthType.PASS if a.auth_pass else AuthType.NONE,
        auth_pass=(a.auth_pass or "").encode()[:8],
        garp_master_delay=a.garp_master_delay, garp_master_repeat=a.garp_master_repeat,
        unicast=bool(a.unicast_peer),
        track_interfaces=(TrackedInterface(a.interface, 0),),
    )
    scripts = {"notify": ScriptSpec(a.notify)} if a.notify else {}
    notifier = Notifier("INSTANCE", a.name, scripts,
                        (a.notify_fifo,) if a.notify_fifo else ())
    return [InstanceSpec(params=params, interface=a.interface, transport=a.transport,
                         peers=tuple(a.unicast_peer), src_ip=a.unicast_src_ip,
                         check_unicast_src=a.check_unicast_src, udp_port=a.udp_port,
                         vips=tuple(vips), notifier=notifier)]


def runners_from_config(path: str, transport: str) -> list[VrrpRunner]:
    """The runners ``lvsd run --vrrp-only`` would build from ``path`` (``lvsd.daemon.vrrpset``)."""
    from lvsd.config.loader import load
    from lvsd.daemon.vrrpset import make_runner, vrrp_groups

    cfg = load(path)
    for d in cfg.diagnostics:
        print(f"config: {d}", file=sys.stderr)
    if cfg.fatal:
        raise SystemExit(f"{path}: fatal configuration errors")
    return [make_runner(cfg, group, members, transport=transport, on_event=lambda *a: None)
            for group, members in vrrp_groups(cfg).values()]


async def amain(a: argparse.Namespace) -> int:
    states: dict[str, str] = {}

    def on_event(name: str, kind: str, info: dict[str, Any]) -> None:
        if kind == "state":
            states[name] = info["state"]
            print(f"STATE {name} {info['state']} {info['reason']}", flush=True)
            write_state()
        else:
            print(f"ERROR {name} {info.get('message')}", flush=True)

    def write_state() -> None:
        if not a.state_file:
            return
        tmp = a.state_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.writelines(f"{k} {v}\n" for k, v in sorted(states.items()))
        os.replace(tmp, a.state_file)
        status: dict[str, Any] = {}
        for r in runners:
            status.update({n: rep.as_dict() for n, rep in r.status().items()})
        with open(tmp, "w") as fh:
            json.dump(status, fh, indent=1, default=str)
        os.replace(tmp, a.state_file + ".json")

    if a.config:
        runners = runners_from_config(a.config, a.transport)
    else:
        runners = [VrrpRunner(specs_from_args(a))]
    for r in runners:
        r.on_event = on_event
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, write_state)
    try:
        for r in runners:
            await r.start()
    except Exception as exc:
        print(f"lvsd-vrrp: cannot start: {exc}", file=sys.stderr)
        for r in runners:
            await r.stop()
        return 1
    print("READY", flush=True)
    await stop.wait()
    for r in runners:
        await r.stop()
    write_state()
    print("STOPPED", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    if os.environ.get("LVSD_VRRP_DEBUG"):
        logging.getLogger("lvsd.vrrp").setLevel(logging.DEBUG)
    try:
        rc = asyncio.run(amain(a))
    except ValueError as exc:
        print(f"lvsd-vrrp: {exc}", file=sys.stderr)
        return 2
    # Everything is released (priority 0 sent, VIPs removed, scripts drained): skip the
    # interpreter's teardown, tens of ms of CPU that would compete with the peer taking over.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
