"""The IPVS full dump's decoder on real kernel bytes: a dump captured in the IPVS VM (Debian's
6.1 kernel) is replayed through ``IPVSDataPlane``'s own read path.

``data/ipvs_dump_6.1.bin`` holds, length-prefixed, every receive buffer of one
``IPVSDataPlane.dump()`` of this table (``bench/ipvs_dump.py --capture`` made it)::

    -A -t 192.0.2.10:80 -s wrr
    -a -t 192.0.2.10:80 -r 10.0.0.1:8080 -m -w 3 -x 100 -y 10
    -a -t 192.0.2.10:80 -r 10.0.0.2:8080 -m -w 0
    -a -t 192.0.2.10:80 -r 10.0.0.4:80 -i --tun-type gue --tun-port 6080 --tun-nocsum
    -A -t [fd00::10]:443 -s sh -b sh-port -p 60 -M 64
    -a -t [fd00::10]:443 -r [fd00::99]:443 -g -w 7
    -a -t [fd00::10]:443 -r [2001:db8::]:443 -g -w 2
    -A -u 192.0.2.11:53 -s rr
    -A -f 7 -s lc
    -a -f 7 -r 10.0.0.9:0 -g -w 1

The replay answers the requests the read path sends with the captured buffers, in order, so a
change in what is sent (another order, batching) fails here as well as a decoding change.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsd.dataplane import ipvs as m
from lvsd.pool.table import DestKey, DestSpec, Fwd, Proto, ServiceEntry, ServiceKey, ServiceSpec

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parent / "data" / "ipvs_dump_6.1.bin"

WEB = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
V6 = ServiceKey.for_addr("fd00::10", 443, Proto.TCP)
DNS = ServiceKey.for_addr("192.0.2.11", 53, Proto.UDP)
FWM = ServiceKey.for_fwmark(7)


def _dests(*ds: DestSpec) -> dict[DestKey, DestSpec]:
    return {d.key: d for d in ds}


EXPECTED = {
    WEB: ServiceEntry(ServiceSpec(WEB, "wrr"), _dests(
        DestSpec(DestKey("10.0.0.1", 8080), 3, Fwd.MASQ, 100, 10),
        DestSpec(DestKey("10.0.0.2", 8080), 0, Fwd.MASQ),
        DestSpec(DestKey("10.0.0.4", 80), 1, Fwd.TUNNEL, tun_type=1, tun_port=6080,
                 tun_flags=0))),
    V6: ServiceEntry(ServiceSpec(V6, "sh", frozenset({"sh-port"}), 60, "64"), _dests(
        DestSpec(DestKey("fd00::99", 443), 7, Fwd.DROUTE),
        DestSpec(DestKey("2001:db8::", 443), 2, Fwd.DROUTE))),
    DNS: ServiceEntry(ServiceSpec(DNS, "rr"), {}),
    FWM: ServiceEntry(ServiceSpec(FWM, "lc"), _dests(DestSpec(DestKey("10.0.0.9", 0), 1,
                                                              Fwd.DROUTE))),
}


def buffers() -> list[bytes]:
    raw, out, off = FIXTURE.read_bytes(), [], 0
    while off < len(raw):
        n = int.from_bytes(raw[off:off + 4], "little")
        out.append(raw[off + 4:off + 4 + n])
        off += 4 + n
    return out


def messages(bufs: list[bytes]) -> Iterator[bytes]:
    for b in bufs:
        off = 0
        while off + 16 <= len(b):
            n = struct.unpack_from("=I", b, off)[0]
            yield b[off:off + n]
            off += (n + 3) & ~3


class Replay:
    """A netlink socket that answers with the captured buffers and records what is sent."""

    def __init__(self, bufs: list[bytes]) -> None:
        self.bufs = list(bufs)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv_into(self, buf: bytearray) -> int:
        b = self.bufs.pop(0)
        buf[:len(b)] = b
        return len(b)

    def close(self) -> None:
        pass


def replayed(bufs: list[bytes]) -> tuple[m.IPVSDataPlane, Replay]:
    """A data plane whose socket is the replay, as ``_GenlSocket`` leaves it after opening:
    the family lookup was request 1, its ACK still queued (the first captured buffer)."""
    family = next(struct.unpack_from("=H", msg, 4)[0] for msg in messages(bufs)
                  if struct.unpack_from("=H", msg, 4)[0] >= 0x10)
    rp = Replay(bufs)
    gs = object.__new__(m._GenlSocket)
    gs.sock = rp  # type: ignore[assignment]
    gs.seq, gs.family = 1, family
    gs._buf = bytearray(65536)
    gs._view = memoryview(gs._buf)
    dp = m.IPVSDataPlane()
    dp._sock = gs
    return dp, rp


@pytest.fixture(autouse=True)
def cold_cache() -> Iterator[None]:
    for c in m._dest_cache.values():
        c.clear()
    yield
    for c in m._dest_cache.values():
        c.clear()


def test_full_dump_of_captured_kernel_bytes() -> None:
    bufs = buffers()
    dp, rp = replayed(bufs)
    table, _ = dp._dump_sync(False)
    assert table == EXPECTED
    assert not rp.bufs, "every captured answer was read"
    # one service dump, then one destination dump per service, each request on its own
    cmds = [(struct.unpack_from("=IHHII", s)[2], s[16]) for s in rp.sent]
    assert cmds == [(m.NLM_F_REQUEST | m.NLM_F_DUMP, m.CMD_GET_SERVICE)] + [
        (m.NLM_F_REQUEST | m.NLM_F_DUMP, m.CMD_GET_DEST)] * 4


def test_every_destination_agrees_with_the_generic_walk() -> None:
    """The fast path (layout check + cache) and the generic attribute walk give the same
    value for each captured destination message, cold and then from the cache."""
    dest_msgs = [msg for msg in messages(buffers())
                 if len(msg) > m._DEST_OFF and msg[16] == m.CMD_NEW_DEST]
    assert len(dest_msgs) == 6
    for msg in dest_msgs:
        generic = m.decode_dest_message(msg, 4)
        assert generic is not None
        cold = m.decode_dest_cached(msg, 0, len(msg), 4)
        warm = m.decode_dest_cached(msg, 0, len(msg), 4)
        assert cold == generic[0] and warm is cold


def test_a_second_dump_is_served_from_the_cache() -> None:
    bufs = buffers()
    first, _ = replayed(bufs)[0]._dump_sync(False)
    second, _ = replayed(bufs)[0]._dump_sync(False)
    assert second == first == EXPECTED
    for k, e in first.items():
        for dk, d in e.dests.items():
            assert second[k].dests[dk] is d


def test_the_cache_keys_on_the_address_family() -> None:
    """2001:db8:: has the same 16 address bytes as IPv4 32.1.13.184 padded with zeros: only
    the family attribute tells them apart, and the cache must not mix them up."""
    msg = next(msg for msg in messages(buffers())
               if len(msg) > m._DEST_OFF and msg[16] == m.CMD_NEW_DEST
               and b"\x20\x01\x0d\xb8" + bytes(12) in msg)
    v6 = m.decode_dest_cached(msg, 0, len(msg), 6)
    assert v6 is not None and v6.key.addr == "2001:db8::"
    assert struct.unpack_from("=H", msg, m._FAM_AT)[0] == socket.AF_INET6
    as_v4 = bytearray(msg)
    struct.pack_into("=H", as_v4, m._FAM_AT, socket.AF_INET)
    v4 = m.decode_dest_cached(bytes(as_v4), 0, len(as_v4), 6)
    assert v4 is not None and v4.key.addr == "32.1.13.184"
    assert m.decode_dest_cached(msg, 0, len(msg), 6) is v6


def test_counters_read_with_the_same_path() -> None:
    bufs = buffers()
    dp, _ = replayed(bufs)
    table, stats = dp._dump_sync(True)
    assert table == EXPECTED
    assert set(stats) == {(k, dk) for k, e in EXPECTED.items() for dk in e.dests}
    assert all(s.active_conns == 0 and s.conns == 0 for s in stats.values())
