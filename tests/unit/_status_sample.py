"""A realistic status snapshot for the status app tests (a fake provider: the app's only input)."""

from __future__ import annotations

import time

from lvsd.status.model import (
    CheckerStatus,
    ConfigStatus,
    InstanceStatus,
    ProcessStatus,
    RealServerStatus,
    ReconcilerStatus,
    Snapshot,
    TrafficStats,
    Transition,
    VirtualServerStatus,
)

#: rs1's counters as the data plane reports them (ipvsadm --stats / --rate)
RS1_STATS = TrafficStats(conns=41, inpkts=900, outpkts=800, inbytes=64000, outbytes=1200000,
                         cps=2, inpps=30, outpps=25, inbps=2100, outbps=40000)

SECRET = "s3cr3tPW"  # the auth_pass of the sample config: must never appear in any output


class FakeProvider:
    """Holds a mutable 'current' snapshot; the app only ever calls it."""

    def __init__(self) -> None:
        self.state = "MASTER"
        self.ready = True
        self.rs2_alive: bool | None = False
        self.draining: tuple[RealServerStatus, ...] = ()  # removed by a reload, draining
        self.calls = 0

    def secrets(self) -> list[str]:
        return [SECRET]

    def __call__(self) -> Snapshot:
        self.calls += 1
        now = time.time()
        rs1 = RealServerStatus("10.0.0.11", 80, True, True, 3, 3, since=now - 50,
                               reason="HTTP_GET 10.0.0.11:80 /health: 200",
                               active_conns=4, inactive_conns=1, forward="Masq",
                               stats=RS1_STATS)
        rs2 = RealServerStatus("10.0.0.12", 80, self.rs2_alive, False, None, 2,
                               failed_checkers=("TCP_CHECK 10.0.0.12:80",),
                               since=now - 5, reason="connection refused")
        rs3 = RealServerStatus("fd00::13", 8080, None, True, 1, 1, dynamic_weight=7,
                               active_conns=0, inactive_conns=2, forward="Masq",
                               stats=TrafficStats(conns=2))
        vs = VirtualServerStatus(
            "192.0.2.100:80/TCP", ("TCP 192.0.2.100:80",), "TCP", "wlc", "NAT", quorum=1,
            quorum_up=True, alive=1, live_weight=4, sorry_server="10.0.0.99:80",
            sorry_active=False, real_servers=(rs1, rs2, rs3, *self.draining),
            flags=("sh-fallback",), persistence_timeout=300,
            persistence_granularity="255.255.255.0", active_conns=4, inactive_conns=3,
            stats=TrafficStats(conns=43, inpkts=900, outpkts=800, inbytes=64000,
                               outbytes=1200000, cps=2, inpps=30, outpps=25, inbps=2100,
                               outbps=40000))
        inst = InstanceStatus(
            "VI_1", 51, "eth0", 3, 4, self.state, base_priority=150, effective_priority=140,
            master="192.0.2.1", master_priority=140, advert_int=0.5, vips=("192.0.2.100/32",),
            vips_held=self.state == "MASTER",
            transitions=(Transition(now - 60, "INIT", "BACKUP", "startup"),
                         Transition(now - 58, "BACKUP", self.state,
                                    "master down timer expired")),
            adverts_sent=120, adverts_received=7, became_master=1, released_master=0,
            priority_zero_sent=0, priority_zero_received=1,
            invalid_packets={"checksum": 2, "auth_mismatch": 1})
        checkers = (
            CheckerStatus("HTTP_GET 10.0.0.11:80 /health", vs.ident, "10.0.0.11:80", "HTTP_GET",
                          True, "success", 0.0021, None, now - 1, now + 2, 0, 30,
                          {"timeout": 1}),
            CheckerStatus("TCP_CHECK 10.0.0.12:80", vs.ident, "10.0.0.12:80", "TCP_CHECK",
                          False, "failure", 0.0004, "connection refused", now - 1, now + 1.5,
                          3, 30, {"refused": 3, "timeout": 2}),
        )
        return Snapshot(
            process=ProcessStatus(4242, "0.1.0", now - 100, "full", self.ready),
            config=ConfigStatus("/etc/keepalived/keepalived.conf", "lvs1", now - 100,
                                generation=2, reloads_total=2, reload_failures_total=1,
                                last_reload_at=now - 10, last_reload_ok=False,
                                last_reload_errors=(
                                    "(keepalived.conf: Line 7) unknown keyword 'prority'",
                                    f"bad auth_pass {SECRET} too long"),
                                router_id="lvs-a"),
            generated_at=now,
            instances=(inst,),
            virtual_servers=(vs,),
            checkers=checkers,
            reconciler=ReconcilerStatus("nftables", now - 1, 12, 9, 1, 0,
                                        ("add dest 10.0.0.11:80",), ("example alarm",)),
        )
