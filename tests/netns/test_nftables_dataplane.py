"""The nftables data plane against the real nft/kernel, inside a throw-away namespace.

Round trips (what is written reads back identical, so the reconciler converges), one
transaction per change, refusals, and repair of hand-made damage.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require
from lvsd.dataplane.base import DataPlane, DataPlaneError
from lvsd.dataplane.nftables import NftablesDataPlane, intervals, obj_id
from lvsd.lab.netns import have_netns
from lvsd.pool.reconciler import Reconciler, diff
from lvsd.pool.table import (
    AddDest,
    AddService,
    DestKey,
    DestSpec,
    Fwd,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
)

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    require(have_netns())  # module scope: runs before the per-test capability gate
    name = f"lt-nftdp-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def plane(ns: str, table: str = "lvsdt") -> NftablesDataPlane:
    return NftablesDataPlane(table, nft=("ip", "netns", "exec", ns, "nft"))


def nft(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], capture_output=True,
                          text=True, check=True, timeout=10).stdout


def e(key: ServiceKey, *dests: tuple[str, int, int], sched: str = "wrr",
      flags: frozenset[str] = frozenset()) -> ServiceEntry:
    return ServiceEntry(ServiceSpec(key, sched, flags),
                        {DestKey(a, p): DestSpec(DestKey(a, p), w) for a, p, w in dests})


V4 = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
U4 = ServiceKey.for_addr("192.0.2.10", 53, Proto.UDP)
V6 = ServiceKey.for_addr("fd00::10", 443, Proto.SCTP)
F4 = ServiceKey.for_fwmark(7)
F6 = ServiceKey.for_fwmark(8, 6)

SHAPES = {
    V4: e(V4, ("10.0.0.1", 80, 3), ("10.0.0.2", 8080, 1), ("10.0.0.3", 80, 0)),
    U4: e(U4, ("10.0.0.1", 53, 2), ("10.0.0.2", 53, 2), sched="sh",
          flags=frozenset({"sh-port", "sh-fallback"})),
    V6: e(V6, ("fd00::1", 443, 1000), ("fd00::2", 443, 1), sched="rr"),
    F4: e(F4, ("10.0.0.1", 443, 5), ("10.0.0.9", 443, 9), sched="fo"),
    F6: e(F6, ("fd00::3", 8443, 0), sched="wlc"),
}


async def _nosleep(_: float) -> None:
    return None


def test_is_a_dataplane(ns: str) -> None:
    assert isinstance(plane(ns), DataPlane)


def test_round_trip_one_transaction_idempotent(ns: str) -> None:
    async def go() -> None:
        dp = plane(ns, "lvsdrt")
        rec = Reconciler(dp, sleep=_nosleep)
        rec.set_desired(SHAPES)
        res = await rec.start()
        assert res.ok and dp.transactions == 1
        assert diff(SHAPES, await dp.dump()) == []
        assert (await rec.reconcile("sweep")).ops == () and dp.transactions == 1
        # a weight change rewrites that one service, still one transaction
        changed = dict(SHAPES)
        changed[V4] = e(V4, ("10.0.0.1", 80, 3), ("10.0.0.2", 8080, 0), ("10.0.0.3", 80, 2))
        rec.set_desired(changed)
        res = await rec.reconcile()
        assert len(res.ops) == 2 and dp.transactions == 2
        assert diff(changed, await dp.dump()) == []
        await dp.delete_table()
    asyncio.run(go())
    listing = nft(ns, "list", "tables")
    assert "lvsdrt" not in listing


def test_rule_and_map_agree_on_mod(ns: str) -> None:
    async def go() -> None:
        dp = plane(ns, "lvsdmod")
        await dp.apply_many([AddService(SHAPES[V4].spec),
                             *[AddDest(V4, d) for d in SHAPES[V4].dests.values()]])
        text = nft(ns, "list", "chain", "inet", "lvsdmod", f"c_{obj_id(V4)}")
        assert "numgen inc mod 4 map" in text  # weights 3 + 1 (weight 0 has no interval)
        assert [(lo, hi) for lo, hi, _ in intervals(SHAPES[V4].spec,
                                                    list(SHAPES[V4].dests.values()))] == [
            (0, 2), (3, 3)]
        await dp.delete_table()
    asyncio.run(go())


def test_refused_methods_and_settings(ns: str) -> None:
    dp = plane(ns)
    dr = DestSpec(DestKey("10.0.0.1", 80), 1, Fwd.DROUTE)
    tun = DestSpec(DestKey("10.0.0.1", 80), 1, Fwd.TUNNEL)
    assert "NAT only" in (dp.refuse(dr) or "") and "DR" in (dp.refuse(dr) or "")
    assert "TUN" in (dp.refuse(tun) or "")
    assert "threshold" in (dp.refuse(DestSpec(DestKey("10.0.0.1", 80), 1, u_threshold=5)) or "")
    assert "persistence" in (dp.refuse(ServiceSpec(V4, persistence_timeout=300)) or "")
    assert "ops" in (dp.refuse(ServiceSpec(U4, "rr", frozenset({"ops"}))) or "")
    assert dp.refuse(ServiceSpec(V4, "wlc")) is None
    assert "wrr" in (dp.warning(ServiceSpec(V4, "wlc")) or "")

    async def go() -> None:
        with pytest.raises(DataPlaneError, match="NAT only"):
            await dp.apply_many([AddService(ServiceSpec(V4)), AddDest(V4, dr)])
        assert await dp.dump() == {}  # nothing written: refused before the transaction
        await dp.delete_table()
    asyncio.run(go())


@pytest.mark.parametrize("damage", ["vmap", "chain", "map", "weights"])
def test_hand_damage_is_repaired(ns: str, damage: str) -> None:
    async def go() -> None:
        dp = plane(ns, "lvsddmg")
        rec = Reconciler(dp, sleep=_nosleep)
        rec.set_desired({V4: SHAPES[V4]})
        await rec.start()
        h = obj_id(V4)
        if damage == "vmap":
            nft(ns, "delete", "element", "inet", "lvsddmg", "svc4", "{ tcp . 192.0.2.10 . 80 }")
        elif damage == "chain":
            nft(ns, "flush", "chain", "inet", "lvsddmg", f"c_{h}")
        elif damage == "map":
            nft(ns, "delete", "element", "inet", "lvsddmg", f"d_{h}", "{ 3 }")
        else:
            nft(ns, "delete", "element", "inet", "lvsddmg", f"w_{h}", "{ 10.0.0.2 . 8080 }")
        res = await rec.reconcile("sweep")
        assert res.repairs >= 1 and res.ok, res
        assert diff({V4: SHAPES[V4]}, await dp.dump()) == []
        assert (await rec.reconcile("sweep")).ops == ()
        await dp.delete_table()
    asyncio.run(go())


keys_st = st.sampled_from([V4, U4, V6, F4, F6])


@st.composite
def tables(draw: st.DrawFn) -> dict[ServiceKey, ServiceEntry]:
    out = {}
    for k in draw(st.sets(keys_st, max_size=3)):
        fam = "fd00::" if k.af == 6 else "10.0.0."
        dests = draw(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5)), max_size=4,
                              unique_by=lambda t: t[0]))
        out[k] = e(k, *[(f"{fam}{i}", 8000 + i, w) for i, w in dests],
                   sched=draw(st.sampled_from(["wrr", "rr", "sh", "fo", "wlc"])))
    return out


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(tables(), min_size=1, max_size=3))
def test_random_sequences_converge_on_real_nft(ns: str,
                                               seq: list[dict[ServiceKey, ServiceEntry]]) -> None:
    async def go() -> None:
        dp = plane(ns, "lvsdhyp")
        rec = Reconciler(dp, sleep=_nosleep)
        for t in seq:
            rec.set_desired(t)
            res = await rec.reconcile()
            assert res.ok
            assert diff(t, await dp.dump(), rec.owned) == []
        await dp.delete_table()
    asyncio.run(go())


def test_scoped_dump_and_service_list(ns: str) -> None:
    async def go() -> None:
        dp = plane(ns, "lvsdscope")
        rec = Reconciler(dp, sleep=_nosleep)
        rec.set_desired(SHAPES)
        assert (await rec.start()).ok
        missing = ServiceKey.for_addr("203.0.113.9", 80, Proto.TCP)
        got = await dp.dump([V4, F6, missing])
        assert dict(got) == {V4: SHAPES[V4], F6: SHAPES[F6]}  # exactly those, no error
        assert await dp.dump([]) == {}
        assert await dp.dump_services() == {k: v.spec for k, v in SHAPES.items()}
        # fresh, and checked: a hand-broken dispatch chain shows in a scoped read
        nft(ns, "flush", "chain", "inet", "lvsdscope", f"c_{obj_id(U4)}")
        assert (await dp.dump([U4]))[U4].spec.scheduler.endswith("!broken")
        # a change-triggered reconcile reads and rewrites only the changed service
        changed = dict(SHAPES)
        changed[V6] = e(V6, ("fd00::1", 443, 7), sched="rr")
        rec.set_desired(changed)
        res = await rec.reconcile("change")
        assert res.ok and {getattr(op, "service", None) for op in res.ops} == {V6}
        assert rec.status.last_read == "scoped 1"
        assert (await rec.reconcile("sweep")).repairs == 1  # the broken chain: next sweep
        assert diff(changed, await dp.dump()) == []
        await dp.delete_table()
    asyncio.run(go())
