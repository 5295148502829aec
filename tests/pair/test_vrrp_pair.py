"""Two or three VRRP machines wired through a tiny scripted network, in scripted time.

Every advert really goes through the codec: ``encode`` at the sender (its primary address to
224.0.0.18 / ff02::12), ``decode`` at each receiver with the receiver's own ``params.expect()``.
Delivery is instantaneous (zero latency); a partition drops packets between two nodes; a crash
removes a node without a priority-0 advert; ``shutdown`` is the graceful stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvsd.vrrp.codec import (
    MCAST_GROUP4,
    MCAST_GROUP6,
    AuthType,
    InvalidReason,
    IPAddress,
    decode,
    encode,
)
from lvsd.vrrp.machine import (
    Action,
    AddVips,
    BecomeMaster,
    RemoveVips,
    SendAdvert,
    State,
    VrrpMachine,
)
from lvsd.vrrp.params import VrrpParams

pytestmark = pytest.mark.pair

VIP = IPv4Address("192.0.2.100")
MDI_100 = 3 + 156 / 256


@dataclass
class Node:
    m: VrrpMachine
    alive: bool = True
    vips: bool = False
    log: list[tuple[float, Action]] = field(default_factory=list)

    @property
    def addr(self) -> IPAddress:
        a = self.m.primary_address
        assert a is not None
        return a


class Net:
    """Scripted LAN. ``run_until(t)`` advances time, firing timers and delivering adverts."""

    def __init__(self, *machines: VrrpMachine, latency: float = 0.0) -> None:
        self.nodes = {m.name: Node(m) for m in machines}
        self.now = 0.0
        self.cut: set[frozenset[str]] = set()
        self.delivered = 0
        self.latency = latency
        self.in_flight: list[tuple[float, int, Node, SendAdvert]] = []
        self.seq = 0

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def start(self, *names: str) -> None:
        for n in names or tuple(self.nodes):
            self.nodes[n].alive = True
            self._apply(self.nodes[n], self.nodes[n].m.start(self.now))

    def crash(self, name: str) -> None:
        self.nodes[name].alive = False

    def shutdown(self, name: str) -> None:
        node = self.nodes[name]
        self._apply(node, node.m.shutdown(self.now))
        node.alive = False

    def partition(self, a: str, b: str) -> None:
        self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut.clear()

    def masters(self) -> list[str]:
        return sorted(n for n, x in self.nodes.items() if x.alive and x.m.state == State.MASTER)

    def vip_holders(self) -> list[str]:
        return sorted(n for n, x in self.nodes.items() if x.alive and x.vips)

    def first_master_time(self, name: str, after: float = -1.0) -> float:
        return min(t for t, a in self.nodes[name].log if isinstance(a, BecomeMaster) and t > after)

    def run_until(self, t_end: float) -> None:
        for _ in range(100_000):
            due = [
                d for x in self.nodes.values()
                if x.alive and (d := x.m.next_deadline) is not None
            ]
            due += [f[0] for f in self.in_flight]
            nxt = min(due) if due else None
            if nxt is None or nxt > t_end:
                break
            self.now = max(self.now, nxt)
            arrived = [f for f in self.in_flight if f[0] <= self.now]
            self.in_flight = [f for f in self.in_flight if f[0] > self.now]
            for _t, _seq, src, adv in sorted(arrived, key=lambda f: (f[0], f[1])):
                for dst, act in self._deliver(src, adv):
                    self._apply(dst, [act])
            for x in list(self.nodes.values()):
                d = x.m.next_deadline
                if x.alive and d is not None and d <= self.now:
                    self._apply(x, x.m.tick(self.now))
        else:  # pragma: no cover
            raise AssertionError("scripted network did not settle")
        self.now = t_end

    def _apply(self, node: Node, actions: list[Action]) -> None:
        queue = [(node, a) for a in actions]
        for _ in range(10_000):
            if not queue:
                return
            src, act = queue.pop(0)
            src.log.append((self.now, act))
            if isinstance(act, AddVips):
                src.vips = True
            elif isinstance(act, RemoveVips):
                src.vips = False
            elif isinstance(act, SendAdvert):
                if self.latency:
                    self.seq += 1
                    self.in_flight.append((self.now + self.latency, self.seq, src, act))
                else:
                    queue += self._deliver(src, act)
        raise AssertionError("advert storm")  # pragma: no cover

    def _deliver(self, src: Node, act: SendAdvert) -> list[tuple[Node, Action]]:
        group = MCAST_GROUP6 if src.addr.version == 6 else MCAST_GROUP4
        payload = encode(act.advert, src.addr, group)
        out: list[tuple[Node, Action]] = []
        for dst in self.nodes.values():
            if dst is src or not dst.alive:
                continue
            if frozenset((src.m.name, dst.m.name)) in self.cut:
                continue
            res = decode(payload, src=src.addr, dst=group, ttl=255, expect=dst.m.params.expect())
            self.delivered += 1
            out += [(dst, a) for a in dst.m.receive(res, src.addr, self.now)]
        return out


def node(name: str, prio: int, last_octet: int, **kw: Any) -> VrrpMachine:
    return VrrpMachine(VrrpParams(
        name=name, vrid=51, priority=prio, addresses=(VIP,),
        primary_address=IPv4Address(f"192.0.2.{last_octet}"), **kw))


def mdi(prio: int, aint: float = 1.0, version: int = 2) -> float:
    skew = (256 - prio) / 256 if version == 2 else (256 - prio) * aint / 256
    return 3 * aint + skew


def trio(**kw: Any) -> Net:
    return Net(node("A", 200, 1, **kw), node("B", 150, 2, **kw), node("C", 100, 3, **kw))


def test_one_master_elected() -> None:
    net = trio()
    net.start()
    net.run_until(30.0)
    assert net.masters() == ["A"] and net.vip_holders() == ["A"]
    assert net.first_master_time("A") == mdi(200)
    assert not any(isinstance(a, BecomeMaster) for _, a in net["B"].log + net["C"].log)
    assert net["B"].m.counters.adverts_received == 27  # A advertises from 3.21875 every 1 s


def test_master_death_takeover_at_rfc_bound() -> None:
    net = trio()
    net.start()
    net.run_until(10.0)
    net.crash("A")  # no priority 0: the backups must time out
    last_advert = mdi(200) + 6  # 9.21875
    net.run_until(30.0)
    assert net.masters() == ["B"] and net.vip_holders() == ["B"]
    assert net.first_master_time("B") == last_advert + mdi(150)  # exactly Master_Down_Interval


def test_priority_zero_handover_at_skew_time() -> None:
    net = trio()
    net.start()
    net.run_until(10.5)
    net.shutdown("A")
    net.run_until(30.0)
    assert net.masters() == ["B"] and net.vip_holders() == ["B"]
    assert net.first_master_time("B") == 10.5 + (256 - 150) / 256  # Skew_Time only
    assert not any(isinstance(a, BecomeMaster) for _, a in net["C"].log)


def test_preemption_when_higher_priority_returns() -> None:
    net = trio()
    net.start()
    net.run_until(10.0)
    net.crash("A")
    net.run_until(20.0)
    assert net.masters() == ["B"]
    net["A"].m = node("A", 200, 1)  # a fresh process
    net.start("A")
    net.run_until(40.0)
    # A discards B's lower-priority adverts, times out, and pre-empts
    assert net.first_master_time("A", after=20.0) == 20.0 + mdi(200)
    assert net.masters() == ["A"] and net.vip_holders() == ["A"]


def test_nopreempt_higher_priority_stays_backup() -> None:
    net = trio()
    net.start()
    net.run_until(10.0)
    net.crash("A")
    net.run_until(20.0)
    net["A"].m = node("A", 200, 1, preempt=False)
    net.start("A")
    net.run_until(60.0)
    assert net.masters() == ["B"] and net.vip_holders() == ["B"]


def test_preempt_delay_defers_takeover() -> None:
    net = trio()
    net.start()
    net.run_until(10.0)
    net.crash("A")
    net.run_until(20.0)
    net["A"].m = node("A", 200, 1, preempt_delay=15.0)
    net.start("A")
    net.run_until(60.0)
    assert net.masters() == ["A"]
    # B is master since 9.21875 + mdi(150) = 12.6328125 and advertises every second. A hears
    # B's first advert at 20.6328125: the delay runs to 35.6328125; the advert at that instant
    # is the first one discarded, so A takes over one Master_Down_Interval after 34.6328125.
    b_master = mdi(200) + 6 + mdi(150)
    first_heard = b_master + 8
    assert net.first_master_time("A", after=20.0) == first_heard + 14 + mdi(200)


def test_partition_heals_into_exactly_one_master() -> None:
    net = Net(node("A", 200, 1), node("B", 150, 2))
    net.start()
    net.run_until(10.0)
    net.partition("A", "B")
    net.run_until(20.0)
    assert net.masters() == ["A", "B"]  # split brain while partitioned, as VRRP must
    net.heal()
    net.run_until(21.5)
    assert net.masters() == ["A"] and net.vip_holders() == ["A"]
    net.run_until(40.0)
    assert net.masters() == ["A"]


def test_partition_heals_even_when_lower_node_advertises_first() -> None:
    net = Net(node("A", 200, 1), node("B", 150, 2))
    net.start()
    net.run_until(10.0)
    net.partition("A", "B")
    net.run_until(20.1)
    net.heal()
    net.run_until(40.0)
    assert net.masters() == ["A"] and net.vip_holders() == ["A"]


def test_equal_priority_tie_break_by_address() -> None:
    # 1 ms latency: both time out at the same instant and become master before hearing each
    # other; then the equal-priority rule (RFC 5798 §6.4.3) keeps the higher address.
    net = Net(node("low", 100, 1), node("high", 100, 2), latency=0.001)
    net.start()
    net.run_until(MDI_100 + 0.0005)
    assert net.masters() == ["high", "low"]
    net.run_until(30.0)
    assert net.masters() == ["high"] and net.vip_holders() == ["high"]
    assert net["low"].m.counters.transitions[-1].reason == (
        "equal priority 100 advert from higher address 192.0.2.2")


def test_equal_priority_partition_heals_to_higher_address() -> None:
    net = Net(node("low", 100, 1), node("high", 100, 2))
    net.partition("low", "high")
    net.start()
    net.run_until(10.0)
    assert net.masters() == ["high", "low"]
    net.heal()
    net.run_until(30.0)
    assert net.masters() == ["high"] and net.vip_holders() == ["high"]


def test_equal_priority_later_starter_with_higher_address_preempts_tie() -> None:
    net = Net(node("low", 100, 1), node("high", 100, 2))
    net.start("low")
    net.run_until(10.0)
    assert net.masters() == ["low"]
    net.start("high")
    net.run_until(30.0)
    # "high" accepts equal-priority adverts as a backup (RFC 5798 §6.4.2: >=), so it stays
    # backup; the tie-break only applies between two masters.
    assert net.masters() == ["low"]


def test_v3_ipv6_backup_uses_masters_interval() -> None:
    vip6 = IPv6Address("fd00::100")

    def n6(name: str, prio: int, host: int, aint: float) -> VrrpMachine:
        return VrrpMachine(VrrpParams(
            name=name, vrid=7, version=3, priority=prio, advert_int=aint, addresses=(vip6,),
            primary_address=IPv6Address(f"fe80::{host}")))

    net = Net(n6("A", 200, 1, 0.5), n6("B", 100, 2, 1.0))
    net.start()
    net.run_until(10.0)
    assert net.masters() == ["A"]
    assert net["B"].m.master_adver_int == 0.5
    net.crash("A")
    net.run_until(20.0)
    first = 1.5 + 56 * 0.5 / 256
    last_advert = first + 0.5 * int((10.0 - first) / 0.5)
    assert net.first_master_time("B") == last_advert + mdi(100, 0.5, version=3)


def test_v2_interval_mismatch_is_dropped_and_counted() -> None:
    net = Net(node("A", 200, 1), node("B", 150, 2, advert_int=2.0))
    net.start()
    net.run_until(20.0)
    # keepalived: adverts with another interval are dropped, so both become master
    assert net.masters() == ["A", "B"]
    assert net["B"].m.counters.invalid[InvalidReason.ADVERT_INT] > 0
    assert net["A"].m.counters.invalid[InvalidReason.ADVERT_INT] > 0


def test_auth_mismatch_is_dropped() -> None:
    net = Net(node("A", 200, 1, auth_type=AuthType.PASS, auth_pass=b"one"),
              node("B", 150, 2, auth_type=AuthType.PASS, auth_pass=b"two"))
    net.start()
    net.run_until(10.0)
    assert net.masters() == ["A", "B"]
    assert net["B"].m.counters.invalid[InvalidReason.AUTH_MISMATCH] > 0


ops = st.one_of(
    st.tuples(st.just("crash"), st.sampled_from("ABC")),
    st.tuples(st.just("shutdown"), st.sampled_from("ABC")),
    st.tuples(st.just("restart"), st.sampled_from("ABC")),
    st.tuples(st.just("cut"), st.sampled_from(["AB", "AC", "BC"])),
    st.tuples(st.just("heal"), st.just("")),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([100, 150, 200]), min_size=3, max_size=3),
    st.lists(st.tuples(st.floats(0.0, 8.0), ops), max_size=12),
    st.sampled_from([0.0, 0.001]),
    st.sampled_from([2, 3]),
)
def test_any_history_converges_to_exactly_one_master(
    prios: list[int], history: list[tuple[float, tuple[str, str]]], latency: float, version: int
) -> None:
    def make(name: str) -> VrrpMachine:
        i = "ABC".index(name)
        return VrrpMachine(VrrpParams(
            name=name, vrid=51, priority=prios[i], version=version, addresses=(VIP,),
            primary_address=IPv4Address(f"192.0.2.{i + 1}")))

    net = Net(*(make(n) for n in "ABC"), latency=latency)
    net.start()
    t = 0.0
    for dt, (op, arg) in history:
        t += dt
        net.run_until(t)
        if op == "crash":
            net.crash(arg)
        elif op == "shutdown" and net[arg].alive:
            net.shutdown(arg)
        elif op == "restart" and not net[arg].alive:
            net[arg].m = make(arg)
            net[arg].vips = False  # a crashed host lost its addresses with it
            net.start(arg)
        elif op == "cut":
            net.partition(arg[0], arg[1])
        elif op == "heal":
            net.heal()
    net.heal()
    for n in "ABC":
        if not net[n].alive:
            net[n].m = make(n)
            net[n].vips = False
            net.start(n)
    net.run_until(t + 30.0)
    masters = net.masters()
    assert len(masters) == 1, masters
    assert net.vip_holders() == masters
    top = max(prios)
    assert prios["ABC".index(masters[0])] == top  # preemption: the best priority wins
    for n in "ABC":
        if n not in masters:
            assert net[n].m.state == State.BACKUP
