"""diff(): minimal, ordered, idempotent, never touches what it does not own."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvsd.dataplane.memory import apply_op, freeze, to_mutable
from lvsd.pool.reconciler import apply_ops, diff
from lvsd.pool.table import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DestKey,
    DestSpec,
    EditDest,
    EditService,
    Fwd,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    op_service,
)

pytestmark = pytest.mark.unit

KEYS = [ServiceKey.for_addr(f"192.0.2.{i}", 80, Proto.TCP) for i in range(1, 5)] + [
    ServiceKey.for_fwmark(3), ServiceKey.for_addr("fd00::1", 53, Proto.UDP)]
DKEYS = [DestKey(f"10.0.0.{i}", 80) for i in range(1, 5)]

dest_st = st.builds(
    lambda k, w, f: DestSpec(k, w, f),
    st.sampled_from(DKEYS), st.integers(0, 3), st.sampled_from([Fwd.MASQ, Fwd.DROUTE]))
spec_sched = st.sampled_from(["wlc", "rr", "sh"])
ptimeout = st.sampled_from([None, 300])


@st.composite
def tables(draw: st.DrawFn) -> dict[ServiceKey, ServiceEntry]:
    keys = draw(st.sets(st.sampled_from(KEYS)))
    out = {}
    for k in keys:
        dests = {d.key: d for d in draw(st.lists(dest_st, max_size=4))}
        out[k] = ServiceEntry(ServiceSpec(k, draw(spec_sched), frozenset(), draw(ptimeout)),
                              dests)
    return out


def canon(t: dict[ServiceKey, ServiceEntry]) -> dict[ServiceKey, tuple[object, ...]]:
    return {k: (e.spec, dict(e.dests)) for k, e in t.items()}


@settings(max_examples=300, deadline=None)
@given(tables(), tables(), st.sets(st.sampled_from(KEYS)))
def test_diff_converges_and_leaves_unowned_alone(desired: dict[ServiceKey, ServiceEntry],
                                                 actual: dict[ServiceKey, ServiceEntry],
                                                 extra_owned: set[ServiceKey]) -> None:
    owned = set(desired) | extra_owned
    ops = diff(desired, actual, owned)
    # applied with the kernel's rules: raises DataPlaneError on an impossible op (adding what
    # exists, a dest of a missing service, deleting what is not there)
    table = to_mutable(actual)
    for op in ops:
        apply_op(table, op)
    result = freeze(table)
    assert canon(result) == canon(apply_ops(actual, ops))
    for k in owned:
        if k in desired:
            assert canon({k: result[k]}) == canon({k: desired[k]})
        else:
            assert k not in result
    for k in set(actual) - owned:
        assert canon({k: result[k]}) == canon({k: actual[k]})  # untouched
    touched = {op_service(op) for op in ops}
    assert not (touched & (set(actual) - owned))
    assert diff(desired, result, owned) == []  # idempotent


@settings(max_examples=200, deadline=None)
@given(tables(), tables())
def test_diff_is_minimal(desired: dict[ServiceKey, ServiceEntry],
                         actual: dict[ServiceKey, ServiceEntry]) -> None:
    ops = diff(desired, actual, set(desired) | set(actual))
    n = 0
    for k in set(desired) | set(actual):
        if k not in desired:
            n += 1  # one DelService (kernel drops its dests)
        elif k not in actual:
            n += 1 + len(desired[k].dests)
        else:
            w, h = desired[k], actual[k]
            n += w.spec != h.spec
            n += sum(1 for d in w.dests if d not in h.dests or h.dests[d] != w.dests[d])
            n += sum(1 for d in h.dests if d not in w.dests)
    assert len(ops) == n


def test_order_adds_before_deletes() -> None:
    a, b = KEYS[0], KEYS[1]
    d1, d2 = DestSpec(DKEYS[0], 1), DestSpec(DKEYS[1], 1)
    actual = {a: ServiceEntry(ServiceSpec(a), {d1.key: d1})}
    desired = {b: ServiceEntry(ServiceSpec(b), {d2.key: d2}),
               a: ServiceEntry(ServiceSpec(a, "rr"), {d2.key: d2})}
    ops = diff(desired, actual)
    assert ops == [EditService(ServiceSpec(a, "rr")), AddDest(a, d2), AddService(ServiceSpec(b)),
                   AddDest(b, d2), DelDest(a, d1.key)]
    ops = diff({}, actual, {a})
    assert ops == [DelService(a)]
    assert diff({}, actual) == []  # not owned: left alone


def test_normalisation_ignores_invisible_differences() -> None:
    k = KEYS[0]
    tun_in_nat = DestSpec(DKEYS[0], 1, Fwd.MASQ, tun_type=1, tun_port=9)
    plain = DestSpec(DKEYS[0], 1, Fwd.MASQ)
    want = {k: ServiceEntry(ServiceSpec(k, "wlc", persistence_timeout=300), {plain.key: plain})}
    have = {k: ServiceEntry(ServiceSpec(k, "WLC", persistence_timeout=300,
                                        persistence_granularity="255.255.255.255"),
                            {plain.key: tun_in_nat})}
    assert diff(want, have) == []
    edited = DestSpec(DKEYS[0], 2, Fwd.MASQ)
    want2 = {k: ServiceEntry(want[k].spec, {edited.key: edited})}
    assert diff(want2, have) == [EditDest(k, edited)]
