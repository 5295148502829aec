"""IPsec-AH for VRRPv2 (``lvsd.vrrp.ah``): RFC 2104 known answers for HMAC-MD5, packets captured
from a real keepalived 2.2.7 in this run (verified, and rebuilt byte for byte), every rejection,
keepalived's sequence-number rules, and the codec/params/transport glue."""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from lvsd.vrrp.ah import (
    AH_LEN,
    SEQ_MAX,
    AhHeader,
    AhSequence,
    AhSession,
    Verified,
    auth_key,
    compute_icv,
    hmac_md5,
    seal,
    verify,
)
from lvsd.vrrp.codec import (
    IPPROTO_AH,
    Advert,
    AuthType,
    Expect,
    Invalid,
    InvalidReason,
    checksum,
    decode,
    encode,
)
from lvsd.vrrp.params import VrrpParams
from lvsd.vrrp.transport import RawTransport, TransportError, make_transport

pytestmark = pytest.mark.unit

R = InvalidReason
SRC, GROUP, PEER = IPv4Address("192.0.2.1"), IPv4Address("224.0.0.18"), IPv4Address("192.0.2.2")
VIP = IPv4Address("192.0.2.100")
KEY = auth_key(b"s3cret")


# ------------------------------------------------------------------ HMAC-MD5 (RFC 2104 §Test)
@pytest.mark.parametrize(
    ("key", "data", "digest"),
    [
        # RFC 2104, "Test Vectors" (also RFC 2202 §2 test cases 1-3)
        (b"\x0b" * 16, b"Hi There", "9294727a3638bb1c13f48ef8158bfc9d"),
        (b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
        (b"\xaa" * 16, b"\xdd" * 50, "56be34521d144c88dbb8c733f0e8b3f6"),
        # RFC 2202 §2 test case 6: a key longer than the block is hashed first (keepalived too)
        (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"),
    ],
)
def test_hmac_md5_rfc2104_vectors(key: bytes, data: bytes, digest: str) -> None:
    assert hmac_md5(key, data).hex() == digest
    # keepalived feeds the message in pieces (header, then the rest): same digest
    assert hmac_md5(key, data[:5], data[5:]).hex() == digest


def test_auth_key_is_keepalived_auth_data() -> None:
    assert auth_key(b"s3cret") == b"s3cret\0\0"
    assert auth_key(b"12345678xyz") == b"12345678"  # the parser truncates to 8


# ------------------------------------------------------------------ captured from keepalived
CAPTURE = r"""
import socket, struct, sys
want = {int(v) for v in sys.argv[1:]}
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 51)
s.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
mreqn = socket.inet_aton("224.0.0.18") + bytes(4) + struct.pack("=i", socket.if_nametoindex("eth0"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
s.settimeout(30)
seen = {}
while any(len(seen.get(v, ())) < 2 for v in want):  # two adverts of each: the counters move
    pkt = s.recv(65535)
    seen.setdefault(pkt[20 + 24 + 1], []).append(pkt.hex())
for vrid in sorted(want):
    print(vrid, seen[vrid][-1])
"""

KA_CONF = """global_defs {
  router_id cap
}
vrrp_instance MC {
  state MASTER
  interface eth0
  virtual_router_id 51
  priority 255
  advert_int 1
  authentication {
    auth_type AH
    auth_pass s3cret
  }
  virtual_ipaddress {
    192.0.2.100/24
  }
}
vrrp_instance UC {
  state MASTER
  interface eth0
  virtual_router_id 52
  priority 255
  advert_int 1
  unicast_src_ip 192.0.2.1
  unicast_peer {
    192.0.2.2
  }
  authentication {
    auth_type AH
    auth_pass 12345678xyz
  }
  virtual_ipaddress {
    192.0.2.101/24
  }
}
"""


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, bytes]]:
    """{vrid: packet} as keepalived 2.2.7 sent them (51 multicast, 52 unicast), read by a raw
    protocol-51 socket in the peer's namespace."""
    from conftest import missing_capability, require
    from lvsd.lab.netns import Topology

    require(missing_capability("interop"))
    d = tmp_path_factory.mktemp("ka-ah")
    (d / "ka.conf").write_text(KA_CONF)
    with Topology("lt-ahcap") as t:
        a = t.add_host("a", f"{SRC}/24")
        b = t.add_host("b", f"{PEER}/24")
        with open(d / "ka.log", "w") as log:
            a.popen(["keepalived", "-n", "-l", "-D", "-f", str(d / "ka.conf"), "--vrrp",
                     "-p", str(d / "ka.pid"), "-r", str(d / "vrrp.pid")],
                    stdout=log, stderr=log)
        out = b.run(sys.executable, "-c", CAPTURE, "51", "52", timeout=60).stdout
    pkts = {int(v): bytes.fromhex(h) for v, h in (ln.split() for ln in out.splitlines())}
    assert set(pkts) == {51, 52}, ((d / "ka.log").read_text(), out)
    yield pkts


def _fields(p: bytes) -> tuple[int, int, int]:
    """(IP id, TTL, AH sequence number)."""
    return struct.unpack("!H", p[4:6])[0], p[8], struct.unpack("!I", p[28:32])[0]


@pytest.mark.interop
def test_keepalived_multicast_packet_verifies_and_rebuilds_byte_exact(
        captured: dict[int, bytes]) -> None:
    pkt = captured[51]
    ip_id, ttl, seq = _fields(pkt)
    assert pkt[9] == IPPROTO_AH and ttl == 255 and pkt[1] == 0xC0
    res = verify(pkt, key=KEY, unicast=False)
    assert isinstance(res, Verified), res
    assert res.ah.spi == SRC and res.ah.next_header == 112 and res.ah.payload_len == 4
    assert res.ah.seq == seq >= 1
    adv = decode(res.payload, src=SRC, dst=GROUP, ttl=ttl, ip_proto=IPPROTO_AH,
                 expect=Expect(version=2, vrid=51, auth_type=AuthType.AH, auth_pass=b"s3cret",
                               advert_int=1, allow_padding=False))
    assert isinstance(adv, Advert), adv
    assert adv.priority == 255 and adv.addresses == (VIP,) and adv.auth_data == bytes(8)
    # lvsd builds the very same bytes: our encode + seal, with keepalived's counters
    payload = encode(Advert(2, 51, 255, 1.0, (VIP,), AuthType.AH, b"s3cret"), SRC, GROUP)
    assert seal(payload, src=SRC, dst=GROUP, key=KEY, seq=seq, ip_id=ip_id,
                unicast=False) == pkt
    # the TTL is covered for multicast: verifying as a unicast instance fails
    bad = verify(pkt, key=KEY, unicast=True)
    assert isinstance(bad, Invalid) and bad.reason == R.AUTH_MISMATCH
    bad = verify(pkt, key=auth_key(b"s3creT"), unicast=False)
    assert isinstance(bad, Invalid) and "invalid IPSEC HMAC-MD5 value" in bad.detail


@pytest.mark.interop
def test_keepalived_unicast_packet_verifies_and_rebuilds_byte_exact(
        captured: dict[int, bytes]) -> None:
    pkt = captured[52]
    ip_id, ttl, seq = _fields(pkt)
    assert IPv4Address(pkt[16:20]) == PEER
    # unicast: the TTL is not covered; the 11-character password is cut to 8
    res = verify(pkt, key=auth_key(b"12345678"), unicast=True)
    assert isinstance(res, Verified), res
    assert isinstance(verify(pkt, key=auth_key(b"12345678"), unicast=False), Invalid)
    payload = encode(Advert(2, 52, 255, 1.0, (IPv4Address("192.0.2.101"),), AuthType.AH),
                     SRC, PEER)
    assert seal(payload, src=SRC, dst=PEER, key=auth_key(b"12345678"), seq=seq, ip_id=ip_id,
                unicast=True, ttl=ttl) == pkt
    # an lvsd backup follows the numbers; the same packet again is a replay
    s = AhSession(b"12345678xyz", 52, unicast=True)
    body, err = s.open_packet(pkt)
    assert err is None and body == payload and s.sequence.seq == seq
    _, err = s.open_packet(pkt)
    assert err is not None and err.detail == (
        f"IPSEC-AH : sequence number {seq} already processed. Packet dropped. Local({seq})")


# ------------------------------------------------------------------ seal / verify
def _payload(vrid: int = 51, prio: int = 100) -> bytes:
    return encode(Advert(2, vrid, prio, 1.0, (VIP,), AuthType.AH), SRC, GROUP)


def _pkt(**kw: object) -> bytes:
    args: dict[str, object] = dict(src=SRC, dst=GROUP, key=KEY, seq=7, ip_id=3, unicast=False)
    args.update(kw)
    return seal(_payload(), **args)  # type: ignore[arg-type]


def _patch(pkt: bytes, off: int, new: bytes) -> bytes:
    return pkt[:off] + new + pkt[off + len(new):]


def test_seal_layout() -> None:
    p = _pkt()
    assert len(p) == 20 + AH_LEN + 20
    assert p[:2] == b"\x45\xc0" and struct.unpack("!H", p[2:4])[0] == len(p)
    assert _fields(p) == (3, 255, 7) and p[9] == 51 and p[6:8] == b"\0\0"
    assert checksum(p[:20]) == 0  # the real header checksum (what the kernel writes)
    ah = AhHeader.unpack(p[20:])
    assert (ah.next_header, ah.payload_len, ah.reserved, ah.spi, ah.seq) == (112, 4, 0, SRC, 7)
    assert ah.icv == compute_icv(p[:20], p[20:44], p[44:], KEY, unicast=False)
    assert p[44:] == _payload()


@pytest.mark.parametrize(
    ("offset", "new", "ok"),
    [
        (1, b"\x00", True),  # TOS: mutable
        (6, b"\x40\x00", True),  # DF set on the way: mutable
        (10, b"\x12\x34", True),  # header checksum: mutable
        (8, b"\x40", False),  # TTL: covered for multicast
        (4, b"\x00\x09", False),  # IP id: covered
        (16, IPv4Address("224.0.0.19").packed, False),  # destination
        (28, b"\0\0\0\x08", False),  # sequence number
        (46, b"\x65", False),  # VRRP priority
    ],
)
def test_icv_covers_what_keepalived_covers(offset: int, new: bytes, ok: bool) -> None:
    res = verify(_patch(_pkt(), offset, new), key=KEY, unicast=False)
    assert isinstance(res, Verified) == ok, res


def test_unicast_icv_ignores_the_ttl() -> None:
    p = _pkt(dst=PEER, unicast=True)
    assert isinstance(verify(_patch(p, 8, b"\x40"), key=KEY, unicast=True), Verified)


def test_verify_rejections() -> None:
    p = _pkt()
    assert verify(p[:50], key=KEY, unicast=False) == Invalid(
        R.TRUNCATED, "IPv4 VRRP packet with AH too short - 50 bytes")
    assert verify(b"\x60" + p[1:], key=KEY, unicast=False).reason == R.TRUNCATED  # type: ignore[union-attr]
    nh = verify(_patch(p, 20, b"\x06"), key=KEY, unicast=False)
    assert isinstance(nh, Invalid) and nh.reason == R.AUTH_UNSUPPORTED
    # an SPI that is not the source address, with an ICV that is right for it
    head, ah, body = bytearray(p[:20]), bytearray(p[20:44]), p[44:]
    ah[4:8] = PEER.packed
    ah[12:24] = compute_icv(bytes(head), bytes(ah), body, KEY, unicast=False)
    spi = verify(bytes(head + ah) + body, key=KEY, unicast=False)
    assert isinstance(spi, Invalid) and spi.reason == R.AUTH_MISMATCH
    # keepalived prints the two network-order words as host (little-endian) integers
    assert spi.detail == "IPSEC AH : invalid IPSEC SPI value. 16908480 and expect 33685696"


# ------------------------------------------------------------------ sequence numbers
def test_sequence_rules() -> None:
    s = AhSequence()
    assert [s.next_send() for _ in range(3)] == [1, 2, 3]
    assert s.accept(3) is not None and s.accept(2) is not None  # not above ours: replay
    assert s.accept(10) is None and s.seq == 10  # the counter follows the peer
    assert s.next_send() == 11  # and continues above it
    s.master_rx_lower(20)
    assert s.seq == 21 and s.next_send() == 22
    top = AhSequence(SEQ_MAX + 1)
    assert top.next_send() == SEQ_MAX + 1 and top.cycle  # stops, marks the cycle
    top.goto_master()
    assert top.seq == 0 and not top.cycle
    s.goto_master()
    assert s.seq == 22  # only a cycled counter restarts


def test_session_one_number_per_advert_and_ip_id_skips_zero() -> None:
    s = AhSession(b"s3cret", 51, unicast=True)
    s.ip_id = 0xFFFF
    one = s.seal_advert(_payload(), SRC, PEER)
    two = s.seal_advert(_payload(), SRC, IPv4Address("192.0.2.3"), new_advert=False)
    assert _fields(one)[0::2] == _fields(two)[0::2] == (1, 1)
    assert one[16:20] != two[16:20] and one[32:44] != two[32:44]  # own ICV per destination
    assert _fields(s.seal_advert(_payload(), SRC, PEER))[0::2] == (2, 2)


def test_session_open_checks_only_what_keepalived_would_reach() -> None:
    tx = AhSession(b"s3cret", 51, unicast=False)
    rx = AhSession(b"s3cret", 51, unicast=False)
    first = tx.seal_advert(_payload(), SRC, GROUP)
    # not ours (other VRID), a failing earlier check (TTL, length): handed on unverified and
    # the counter does not move (keepalived never reaches AH for them)
    other = AhSession(b"s3cret", 52, unicast=False)
    assert other.open_packet(first) == (_payload(), None) and other.sequence.seq == 0
    assert rx.open_packet(first, ttl_ok=False) == (_payload(), None)
    assert rx.open_packet(first + b"\0\0\0\0")[1] is None and rx.sequence.seq == 0
    assert rx.open_packet(first) == (_payload(), None) and rx.sequence.seq == 1
    assert rx.open_packet(first)[1] is not None  # replay
    forged = _patch(tx.seal_advert(_payload(), SRC, GROUP), 46, b"\xff")
    body, err = rx.open_packet(forged)
    assert err is not None and err.reason == R.AUTH_MISMATCH and body[2] == 0xFF
    assert rx.sequence.seq == 1  # a forged packet does not move the counter
    assert rx.open_packet(first[:30])[1] == Invalid(
        R.TRUNCATED, "IPv4 VRRP packet with AH too short - 30 bytes")
    # a reload carries the counters over
    again = AhSession(b"n3w", 51, unicast=False)
    again.continue_from(tx)
    assert _fields(again.seal_advert(_payload(), SRC, GROUP))[0::2] == (3, 3)


# ------------------------------------------------------------------ codec / params / transport
AH_EXPECT = Expect(version=2, vrid=51, auth_type=AuthType.AH, auth_pass=b"s3cret",
                   advert_int=1.0, allow_padding=False)


def test_codec_requires_the_ah_header_exactly_when_configured() -> None:
    assert isinstance(decode(_payload(), src=SRC, dst=GROUP, ttl=255, expect=AH_EXPECT,
                             ip_proto=IPPROTO_AH), Advert)
    no_ah = decode(_payload(), src=SRC, dst=GROUP, ttl=255, expect=AH_EXPECT)
    assert no_ah == Invalid(R.AUTH_TYPE, "No AH header but auth type is AH")
    plain = Expect(version=2, vrid=51, advert_int=1.0)
    assert decode(_payload(), src=SRC, dst=GROUP, ttl=255, expect=plain,
                  ip_proto=IPPROTO_AH) == Invalid(R.AUTH_TYPE,
                                                  "Received AH header but auth type not AH")
    # inside AH, the VRRP auth type must still say AH
    none = encode(Advert(2, 51, 100, 1.0, (VIP,)), SRC, GROUP)
    res = decode(none, src=SRC, dst=GROUP, ttl=255, expect=AH_EXPECT, ip_proto=IPPROTO_AH)
    assert isinstance(res, Invalid) and res.reason == R.AUTH_TYPE
    # no padding: the ICV covers every byte, keepalived wants the exact length
    res = decode(_payload() + bytes(4), src=SRC, dst=GROUP, ttl=255, expect=AH_EXPECT,
                 ip_proto=IPPROTO_AH)
    assert isinstance(res, Invalid) and res.reason == R.LENGTH


def test_encode_ah_carries_type_2_and_no_password() -> None:
    p = encode(Advert(2, 51, 100, 1.0, (VIP,), AuthType.AH, b"s3cret"), SRC, GROUP)
    assert p[4] == 2 and p[-8:] == bytes(8)


def test_params_ah() -> None:
    p = VrrpParams(name="VI_1", vrid=51, addresses=(VIP,), auth_type=AuthType.AH,
                   auth_pass=b"s3cret")
    assert p.ah_key == b"s3cret\0\0"
    assert p.expect().auth_type == AuthType.AH and not p.expect().allow_padding
    assert VrrpParams(name="VI_1", vrid=51, auth_type=AuthType.PASS, auth_pass=b"x").ah_key is None


def test_make_transport_ah() -> None:
    tr = make_transport("raw", "eth0", 4, peers=["192.0.2.2"], ah_key=b"s3cret\0\0", vrid=51)
    assert isinstance(tr, RawTransport) and tr.ah is not None and tr.proto == IPPROTO_AH
    assert tr.ah.unicast and tr.ah.vrid == 51
    tr.ah.seal_advert(_payload(), SRC, PEER)
    nxt = make_transport("raw", "eth0", 4, ah_key=b"other\0\0\0", vrid=51, previous=tr)
    assert isinstance(nxt, RawTransport) and nxt.ah is not None
    assert nxt.ah.sequence.seq == 1 and nxt.ah.key == b"other\0\0\0"
    plain = make_transport("raw", "eth0", 4)
    assert isinstance(plain, RawTransport) and plain.ah is None and plain.proto == 112
    with pytest.raises(TransportError, match="needs the raw transport"):
        make_transport("udp", "eth0", 4, ah_key=KEY, vrid=51)
    with pytest.raises(TransportError, match="IPv4 only"):
        make_transport("raw", "eth0", 6, ah_key=KEY, vrid=51)
