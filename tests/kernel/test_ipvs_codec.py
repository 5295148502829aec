"""The IPVS data plane's pure parts, on the host: refusals, canonical forms, the codec.

The kernel itself is exercised in the VM (test_ipvs_vm.py); these pin what can be checked
without it, fast: the messages ``refuse()`` gives, flag and granularity canonicalisation, and
that every attribute the codec writes is read back unchanged.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lvsd.dataplane import ipvs as m
from lvsd.dataplane.ipvs import IPVSDataPlane, canonical_granularity, flag_bits, flag_names
from lvsd.pool.table import DestKey, DestSpec, Fwd, Proto, ServiceKey, ServiceSpec

pytestmark = pytest.mark.unit

V4 = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
V6 = ServiceKey.for_addr("fd00::10", 443, Proto.TCP)


def test_refuse_names_the_server_and_the_reason() -> None:
    dp = IPVSDataPlane()
    assert dp.refuse(ServiceSpec(V4, "rr")) is None
    assert "unknown IPVS scheduler 'fastest'" in (dp.refuse(ServiceSpec(V4, "fastest")) or "")
    why = dp.refuse(ServiceSpec(V4, "rr", frozenset({"sh-port"})))
    assert why is not None and "TCP 192.0.2.10:80" in why and "sh-port" in why
    assert "prefix length" in (dp.refuse(ServiceSpec(V6, "rr", frozenset(), 60, "255.0.0.0"))
                               or "")
    d = DestKey("10.0.0.1", 80)
    assert dp.refuse(DestSpec(d, 1, Fwd.MASQ)) is None
    assert "lower threshold 5 above upper threshold 0" in (
        dp.refuse(DestSpec(d, 1, Fwd.MASQ, 0, 5)) or "")
    assert "tunnel options need tunnel forwarding" in (
        dp.refuse(DestSpec(d, 1, Fwd.DROUTE, tun_type=1)) or "")
    assert "GUE tunnel needs a tunnel port" in (
        dp.refuse(DestSpec(d, 1, Fwd.TUNNEL, tun_type=1)) or "")
    assert "weight -1" in (dp.refuse(DestSpec(d, -1)) or "")
    assert "needs tunnel forwarding" in (
        dp.refuse_dest_in(V4, DestSpec(DestKey("fd00::1", 80), 1, Fwd.MASQ)) or "")
    assert dp.refuse_dest_in(V4, DestSpec(DestKey("fd00::1", 80), 1, Fwd.TUNNEL)) is None


def test_canonical_forms() -> None:
    assert canonical_granularity(4, "24") == "255.255.255.0"
    assert canonical_granularity(4, "/16") == "255.255.0.0"
    assert canonical_granularity(4, "255.255.255.255") is None
    assert canonical_granularity(6, "/64") == "64"
    assert canonical_granularity(6, "128") is None
    with pytest.raises(ValueError, match="not a netmask"):
        canonical_granularity(4, "255.0.255.0")
    sh = ServiceSpec(V4, "sh", frozenset({"sh-port", "sh-fallback", "ops"}), 30)
    assert flag_bits(sh) == m.F_SCHED1 | m.F_SCHED2 | m.F_ONEPACKET | m.F_PERSISTENT
    assert flag_names(flag_bits(sh), "sh") == frozenset({"sh-port", "sh-fallback", "ops"})
    assert flag_names(m.F_SCHED1 | m.F_SCHED3, "rr") == frozenset({"flag-1", "flag-3"})


def _roundtrip_service(spec: ServiceSpec) -> ServiceSpec:
    return m.decode_service(m.parse_attrs(m.service_attrs(spec)))


def test_ipv6_netmask_is_a_host_order_prefix_length() -> None:
    a = m.parse_attrs(m.service_attrs(ServiceSpec(V6, "rr", frozenset(), 10, "64")))
    assert struct.unpack("=I", a[m.SVC_NETMASK])[0] == 64
    a = m.parse_attrs(m.service_attrs(ServiceSpec(V4, "rr", frozenset(), 10, "24")))
    assert bytes(a[m.SVC_NETMASK]) == bytes([255, 255, 255, 0])
    a = m.parse_attrs(m.dest_attrs(DestSpec(DestKey("10.0.0.1", 80), 1, Fwd.TUNNEL, 0, 0, 1,
                                            6080, 2)))
    assert bytes(a[m.DEST_TUN_PORT]) == (6080).to_bytes(2, "big")


keys = st.one_of(
    st.builds(ServiceKey.for_addr, st.ip_addresses(v=4).map(str), st.integers(0, 65535),
              st.sampled_from([Proto.TCP, Proto.UDP, Proto.SCTP])),
    st.builds(ServiceKey.for_addr, st.ip_addresses(v=6).map(str), st.integers(0, 65535),
              st.sampled_from([Proto.TCP, Proto.UDP, Proto.SCTP])),
    st.builds(ServiceKey.for_fwmark, st.integers(1, 2**32 - 1), st.sampled_from([4, 6])),
)


@given(key=keys, sched=st.sampled_from(sorted(m.SCHEDULERS)), ops=st.booleans(),
       timeout=st.one_of(st.none(), st.integers(1, 86400)), plen=st.integers(1, 32))
def test_service_codec_round_trips(key: ServiceKey, sched: str, ops: bool, timeout: int | None,
                                   plen: int) -> None:
    flags = {"ops"} if ops else set()
    if sched in ("sh", "mh"):
        flags.add(f"{sched}-port")
    gran = None
    if timeout is not None:
        gran = canonical_granularity(key.af, str(plen if key.af == 4 else plen * 4))
    spec = ServiceSpec(key, sched, frozenset(flags), timeout, gran)
    assert _roundtrip_service(spec) == spec


@given(addr=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
       port=st.integers(0, 65535), weight=st.integers(0, 2**31 - 1),
       fwd=st.sampled_from([Fwd.MASQ, Fwd.DROUTE, Fwd.TUNNEL]),
       uth=st.integers(0, 2**32 - 1), tun=st.tuples(st.integers(0, 2), st.integers(0, 65535),
                                                    st.integers(0, 3)))
def test_dest_codec_round_trips(addr: str, port: int, weight: int, fwd: Fwd, uth: int,
                                tun: tuple[int, int, int]) -> None:
    d = DestSpec(DestKey(addr, port), weight, fwd, uth, uth // 2, *tun)
    buf = m.dest_attrs(d)
    assert m.decode_dest(buf, m.attr_index(buf, 0, len(buf)), 4) == d


def _kernel_order(d: DestSpec) -> bytes:
    """A dump message laid out as ip_vs_genl_fill_dest() writes it (stats left empty)."""
    af = 10 if ":" in d.key.addr else 2
    attrs = (m._addr(m.DEST_ADDR, d.key.addr) + m._be16(m.DEST_PORT, d.key.port)
             + m._u32(m.DEST_FWD, int(d.fwd)) + m._u32(m.DEST_WEIGHT, d.weight)
             + m._u8(m.DEST_TUN_TYPE, d.tun_type) + m._be16(m.DEST_TUN_PORT, d.tun_port)
             + m._u16(m.DEST_TUN_FLAGS, d.tun_flags) + m._u32(m.DEST_U_THRESH, d.u_threshold)
             + m._u32(m.DEST_L_THRESH, d.l_threshold) + m._u32(m.DEST_ACTIVE, 3)
             + m._u32(m.DEST_INACTIVE, 4) + m._u32(9, 0) + m._u16(m.DEST_ADDR_FAMILY, af)
             + m._nla(m.DEST_STATS, b""))
    return bytes(20) + m._nla(m.ATTR_DEST, attrs)


@given(addr=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
       port=st.integers(0, 65535), weight=st.integers(0, 2**31 - 1),
       fwd=st.sampled_from([Fwd.MASQ, Fwd.DROUTE, Fwd.TUNNEL]),
       tun=st.tuples(st.integers(0, 2), st.integers(0, 65535), st.integers(0, 3)))
def test_fast_dest_decoder_matches_the_generic_one(addr: str, port: int, weight: int, fwd: Fwd,
                                                   tun: tuple[int, int, int]) -> None:
    d = DestSpec(DestKey(addr, port), weight, fwd, 7, 3, *tun)
    msg = _kernel_order(d)
    idx = m._dest_index(msg)
    assert idx is not None
    assert m.decode_dest_fast(msg) == m.decode_dest(msg, idx, 4) == d


def test_fast_dest_decoder_declines_another_layout() -> None:
    d = DestSpec(DestKey("10.0.0.1", 80), 2)
    shuffled = bytes(20) + m._nla(m.ATTR_DEST, m.dest_attrs(d))  # our order, not the kernel's
    assert m.decode_dest_fast(shuffled) is None
    idx = m._dest_index(shuffled)
    assert idx is not None and m.decode_dest(shuffled, idx, 4) == d
