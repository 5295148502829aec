"""IPsec-AH for VRRPv2 (keepalived's ``auth_type AH``): sealing, verifying, anti-replay. Sans-IO.

API summary
-----------
``hmac_md5(key, *parts) -> bytes``   RFC 2104 HMAC-MD5 (16 bytes) of the concatenated parts.
``auth_key(password) -> bytes``      the HMAC key: the password cut/zero-padded to 8 bytes.
``AhHeader``                          the 24-byte header (``pack()`` / ``AhHeader.unpack``).
``compute_icv(ip_header, ah, payload, key, *, unicast) -> bytes``
                                      the 12-byte ICV (mutable IP fields and the ICV zeroed).
``seal(payload, *, src, dst, key, seq, ip_id, unicast, ttl=255) -> bytes``
                                      a whole IPv4 packet: IP header + AH + VRRP payload.
``verify(packet, *, key, unicast) -> Verified | Invalid``
                                      ICV, then SPI; never raises.
``AhSequence``                        keepalived's ``seq_counter_t`` (one counter for both ways).
``AhSession``                         what one VRRP instance's transport keeps: key, counters;
                                      ``seal_advert`` / ``open_packet``.

Theory of operation
-------------------
keepalived 2.2.7 (``keepalived/vrrp/vrrp.c``: ``vrrp_build_ip4``, ``vrrp_build_ipsecah``,
``vrrp_update_pkt``, ``vrrp_in_chk_ipsecah``, ``vrrp_check_packet``;
``keepalived/include/vrrp_ipsecah.h``; ``keepalived/vrrp/vrrp_ipsecah.c``) implements RFC 2402
AH with HMAC-MD5-96 (RFC 2403) for VRRPv2 over IPv4 only. On the wire::

    IPv4 header  tos 0xc0, id = keepalived's own counter, frag_off 0, TTL 255, protocol 51
    AH (24)      next header 112 | payload len 4 | reserved 0 | SPI = the IPv4 source address
                 | sequence number (32 bit) | ICV (12 bytes, HMAC-MD5 truncated to 96 bits)
    VRRPv2       auth type 2, authentication data 8 zero bytes, checksum as for any v2 advert

The ICV is HMAC-MD5 keyed with ``auth_pass`` as keepalived stores it (8 bytes, zero padded; a
longer password is truncated by the config parser) over the IP header with its mutable fields
zeroed (TOS, fragment offset, header checksum, and the TTL for unicast instances only), the AH
header with a zero ICV, and the VRRP message. The IP identification field and the total length
are covered. The sender computes it with a zero header checksum (the kernel fills the checksum
in later); ``seal`` also fills in the real checksum, so it returns the packet exactly as it
appears on the wire.

Checks on receipt, in keepalived's order (``vrrp_in_chk_ipsecah``): the ICV ("invalid IPSEC
HMAC-MD5 value"), then the SPI equals the source address, then the sequence number (below).
Every failure is an ``Invalid`` with reason ``AUTH_MISMATCH`` (keepalived counts all three as
``auth_failure``) and keepalived's message as the detail. An AH header for another protocol is
``AUTH_UNSUPPORTED`` (keepalived drops it silently).

Sequence numbers (``AhSequence``, keepalived's ``ipsecah_counter``): ONE counter per instance
serves both directions. Sending increments it and uses the new value (the first advert after
start carries 1); past 0xFFFFFFFD it stops incrementing and marks itself cycled (136 years of
1 s adverts). Receiving a verified packet accepts its number only if it is greater than the
counter, which then takes that value; anything else is a replay ("sequence number N already
processed. Packet dropped. Local(M)"). So a backup follows the master's numbers and, when it
takes over, continues above them: the old master, now backup, accepts its adverts. A freshly
started node has counter 0 and accepts whatever a running master sends; this is why keepalived
refuses ``state MASTER`` with AH ("Initial state master is incompatible with AH authentication -
clearing", reported by the config loader). The counter must survive a reload (keepalived keeps
it): ``AhSession.continue_from`` carries it over to a new transport.

keepalived also moves the counter on state events that only its state machine sees: a master
receiving a lower-priority advert sets it to that advert's number + 1 (``vrrp_state_master_rx``:
"Syncing seq_num"), and becoming master after a cycle resets it to 0. ``AhSequence`` offers both
(``master_rx_lower``, ``goto_master``), but lvsd's transport does not see the state machine, so
they are not wired: after a lower-priority advert numbered N lvsd's next advert carries N + 1
where keepalived's carries N + 2 (peers accept either: each only needs a number above its own
counter), and the cycle reset would take 136 years to matter.

``AhSession.seal_advert`` uses one sequence number and one IP id per advert (keepalived's
``vrrp_update_pkt(vrrp, prio, NULL)``) and one ICV per destination (unicast peers differ in the
destination address, which the ICV covers).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from lvsd.vrrp.codec import (
    HEADER_LEN,
    IPPROTO_AH,
    IPPROTO_VRRP,
    TTL,
    V2_AUTH_LEN,
    AuthType,
    Invalid,
    InvalidReason,
    checksum,
)

__all__ = [
    "AH_LEN",
    "ICV_LEN",
    "AhHeader",
    "AhSequence",
    "AhSession",
    "Verified",
    "auth_key",
    "compute_icv",
    "hmac_md5",
    "seal",
    "verify",
]

AH_LEN = 24  # sizeof(ipsec_ah_t)
ICV_LEN = 12  # HMAC_MD5_TRUNC
AH_PAYLOAD_LEN = 4  # IPSEC_AH_PLEN: AH length in 32-bit words minus 2
KEY_LEN = 8  # sizeof(vrrp->auth_data)
SEQ_MAX = 0xFFFFFFFD  # keepalived: "Cycled assumed if 0xFFFFFFFD reached"
IP_TOS = 0xC0  # keepalived vrrp_build_ip4: "internet network control"
_IPV4_MIN = 20


def hmac_md5(key: bytes, *parts: bytes) -> bytes:
    """RFC 2104 HMAC-MD5 of ``parts`` concatenated (keepalived ``hmac_md5``, RFC 2085 §2.2)."""
    mac = hmac.new(key, digestmod=hashlib.md5)
    for p in parts:
        mac.update(p)
    return mac.digest()


def auth_key(password: bytes) -> bytes:
    """The key keepalived uses: ``auth_pass`` in its 8-byte ``auth_data``, zero padded."""
    return password[:KEY_LEN].ljust(KEY_LEN, b"\x00")


@dataclass(frozen=True, slots=True)
class AhHeader:
    """RFC 2402 §2 authentication header as keepalived fills it (``ipsec_ah_t``)."""

    spi: IPv4Address
    seq: int
    icv: bytes = bytes(ICV_LEN)
    next_header: int = IPPROTO_VRRP
    payload_len: int = AH_PAYLOAD_LEN
    reserved: int = 0

    def pack(self) -> bytes:
        return (struct.pack("!BBH", self.next_header, self.payload_len, self.reserved)
                + self.spi.packed + struct.pack("!I", self.seq) + self.icv)

    @classmethod
    def unpack(cls, data: bytes) -> AhHeader:
        """From the first ``AH_LEN`` bytes of ``data`` (``ValueError`` when shorter)."""
        if len(data) < AH_LEN:
            raise ValueError(f"{len(data)} bytes, an AH header needs {AH_LEN}")
        nh, plen, res = struct.unpack("!BBH", data[:4])
        (seq,) = struct.unpack("!I", data[8:12])
        return cls(IPv4Address(data[4:8]), seq, bytes(data[12:AH_LEN]), nh, plen, res)


def _immutable(ip_header: bytes, unicast: bool) -> bytes:
    """``ip_header`` with the fields keepalived zeroes for the ICV."""
    h = bytearray(ip_header)
    h[1] = 0  # tos
    h[6:8] = b"\x00\x00"  # frag_off
    h[10:12] = b"\x00\x00"  # check
    if unicast:
        h[8] = 0  # ttl: keepalived zeroes it for unicast instances only
    return bytes(h)


def compute_icv(ip_header: bytes, ah: bytes, payload: bytes, key: bytes, *,
                unicast: bool) -> bytes:
    """HMAC-MD5-96 over the IP header (mutable fields zeroed), the AH header (ICV zeroed) and
    the payload, keyed with ``key`` (already ``auth_key``-padded)."""
    ah0 = bytes(ah[: AH_LEN - ICV_LEN]) + bytes(ICV_LEN)
    return hmac_md5(key, _immutable(ip_header, unicast), ah0, payload)[:ICV_LEN]


def seal(payload: bytes, *, src: IPv4Address, dst: IPv4Address, key: bytes, seq: int,
         ip_id: int, unicast: bool, ttl: int = TTL) -> bytes:
    """The IPv4 packet keepalived sends for the VRRPv2 ``payload`` (see the module docstring)."""
    total = _IPV4_MIN + AH_LEN + len(payload)
    head = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, IP_TOS, total, ip_id & 0xFFFF, 0,
                                 ttl, IPPROTO_AH, 0, src.packed, dst.packed))
    ah = AhHeader(src, seq & 0xFFFFFFFF)
    icv = compute_icv(bytes(head), ah.pack(), payload, key, unicast=unicast)
    head[10:12] = struct.pack("!H", checksum(head))
    return bytes(head) + AhHeader(src, ah.seq, icv).pack() + payload


@dataclass(frozen=True, slots=True)
class Verified:
    """A packet whose ICV and SPI are right: its AH header and the VRRP payload after it."""

    ah: AhHeader
    payload: bytes


def verify(packet: bytes, *, key: bytes, unicast: bool) -> Verified | Invalid:
    """Check the ICV, then the SPI, of a whole IPv4 AH packet (keepalived
    ``vrrp_in_chk_ipsecah`` without the sequence check). Never raises."""
    r = InvalidReason
    if len(packet) < _IPV4_MIN or packet[0] >> 4 != 4:
        return Invalid(r.TRUNCATED, "not an IPv4 packet")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < _IPV4_MIN or len(packet) < ihl + AH_LEN + HEADER_LEN:
        # keepalived vrrp_get_header
        return Invalid(r.TRUNCATED, f"IPv4 VRRP packet with AH too short - {len(packet)} bytes")
    ah = AhHeader.unpack(packet[ihl : ihl + AH_LEN])
    if ah.next_header != IPPROTO_VRRP:
        return Invalid(r.AUTH_UNSUPPORTED, f"AH header for protocol {ah.next_header}, not VRRP")
    payload = packet[ihl + AH_LEN :]
    icv = compute_icv(packet[:ihl], packet[ihl : ihl + AH_LEN], payload, key, unicast=unicast)
    if not hmac.compare_digest(icv, ah.icv):
        return Invalid(r.AUTH_MISMATCH, "IPSEC-AH : invalid IPSEC HMAC-MD5 value. Due to fields "
                       "mutation or bad password !")
    src = IPv4Address(packet[12:16])
    if ah.spi != src:
        # keepalived prints both as host-order integers of the network-order words
        return Invalid(r.AUTH_MISMATCH, f"IPSEC AH : invalid IPSEC SPI value. "
                       f"{_le32(src)} and expect {_le32(ah.spi)}")
    return Verified(ah, payload)


def _le32(a: IPv4Address) -> int:
    return int.from_bytes(a.packed, "little")


class AhSequence:
    """keepalived's ``seq_counter_t``: one counter for sent and received sequence numbers."""

    def __init__(self, seq: int = 0, cycle: bool = False) -> None:
        self.seq = seq
        self.cycle = cycle

    def next_send(self) -> int:
        """The number for the next advert (keepalived ``vrrp_update_pkt``)."""
        if self.seq > SEQ_MAX:
            self.cycle = True
        else:
            self.seq += 1
        return self.seq

    def accept(self, seq: int) -> Invalid | None:
        """A verified packet's number: None if new (the counter takes it), else the replay."""
        if seq > self.seq:
            self.seq = seq
            return None
        return Invalid(InvalidReason.AUTH_MISMATCH,
                       f"IPSEC-AH : sequence number {seq} already processed. Packet dropped. "
                       f"Local({self.seq})")

    def master_rx_lower(self, seq: int) -> None:
        """A master got a lower-priority advert numbered ``seq`` ("Syncing seq_num")."""
        self.seq = (seq + 1) & 0xFFFFFFFF
        self.cycle = False

    def goto_master(self) -> None:
        """Becoming master: a cycled counter starts again (keepalived vrrp_state_goto_master)."""
        if self.cycle:
            self.cycle = False
            self.seq = 0


class AhSession:
    """The AH state of one VRRP instance's transport (sans-IO; the transport does the I/O).

    ``key`` is the password (padded here), ``vrid`` the instance's (packets of other virtual
    routers are left alone: they are not ours to verify or to count), ``unicast`` whether the
    instance has unicast peers (then the TTL is not covered by the ICV).
    """

    def __init__(self, key: bytes, vrid: int, *, unicast: bool) -> None:
        self.key = auth_key(key)
        self.vrid = vrid
        self.unicast = unicast
        self.sequence = AhSequence()
        self.ip_id = 0
        self._seq = 0

    def continue_from(self, other: AhSession) -> None:
        """Keep ``other``'s counters (a reload that replaces the transport, keepalived keeps
        ``ipsecah_counter`` across reloads)."""
        self.sequence = other.sequence
        self.ip_id = other.ip_id
        self._seq = other._seq

    def seal_advert(self, payload: bytes, src: IPv4Address, dst: IPv4Address, *,
                    new_advert: bool = True) -> bytes:
        """The packet for ``dst``. ``new_advert`` False: another destination of the advert
        sealed last (same sequence number and IP id, keepalived's per-peer update)."""
        if new_advert:
            # keepalived: "kernel will fill in ID if left to 0, so we overflow to 1"
            self.ip_id = (self.ip_id + 1) & 0xFFFF or 1
            self._seq = self.sequence.next_send()
        return seal(payload, src=src, dst=dst, key=self.key, seq=self._seq, ip_id=self.ip_id,
                    unicast=self.unicast)

    def open_packet(self, packet: bytes, *, ttl_ok: bool = True) -> tuple[bytes, Invalid | None]:
        """(VRRP payload, why it must be discarded or None) for a received IPv4 packet.

        Only a packet of our VRID that would pass keepalived's earlier checks (length, TTL
        (``ttl_ok``, judged by the caller), version, auth type) is verified and can move the
        counter; any other is returned unverified (None) for the codec to judge, as keepalived
        checks those first and never reaches AH for them.
        """
        ihl = (packet[0] & 0x0F) * 4 if packet else 0
        start = ihl + AH_LEN
        vrrp = packet[start:]
        if len(packet) < _IPV4_MIN or len(vrrp) < HEADER_LEN:
            res = verify(packet, key=self.key, unicast=self.unicast)
            return vrrp, res if isinstance(res, Invalid) else None
        if vrrp[1] != self.vrid:
            return vrrp, None
        expected = HEADER_LEN + 4 * vrrp[3] + V2_AUTH_LEN
        if (len(vrrp) != expected or not ttl_ok or vrrp[0] >> 4 != 2
                or vrrp[4] != AuthType.AH):
            return vrrp, None
        res = verify(packet, key=self.key, unicast=self.unicast)
        if isinstance(res, Invalid):
            return vrrp, res
        return res.payload, self.sequence.accept(res.ah.seq)
