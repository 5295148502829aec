"""VRRP advertisement codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798), pure functions.

API summary
-----------
``Advert``                 frozen record of one advertisement (what goes on the wire).
``encode(advert, src, dst, *, v3_checksum_as_v2=False) -> bytes``
                           the VRRP payload (IP header not included), checksum filled in.
``decode(payload, *, src, dst, ttl, expect, ip_proto=112) -> Advert | Invalid``
                           validates per RFC 3768 §7.1 / RFC 5798 §7.1 and never raises.
``Expect``                 what the receiving instance is configured for (version, vrid,
                           auth, advert_int, strictness...); ``Expect()`` accepts any VRID.
``Invalid`` / ``InvalidReason``
                           why a packet was discarded (a fixed enum: counters key on it).
``peek_vrid(payload)``     the VRID byte, for dispatching to an instance before decoding.
``checksum(data)``         the RFC 1071 Internet checksum.
``addresses_match(advert, configured)``  keepalived's (warning-only) VIP list check.

Theory of operation
-------------------
The payload is everything after the IPv4 header (and after nothing for IPv6: raw IPv6 sockets
hand over the upper-layer payload only). The transport passes the IPv4 TTL / IPv6 hop limit
it received (``ttl=None`` when unknown, e.g. a socket that cannot report it, in which case the
check is skipped as keepalived does with ``rx_ttl_hl == -1``).

Wire layout (both versions, network byte order)::

    0      | version(4) | type(4) |
    1      | VRID                 |
    2      | priority             |
    3      | count of addresses   |
    4..5   v2: auth type (1), advert int in seconds (1)
           v3: reserved (4 bits, zero) + max advert int in centiseconds (12 bits)
    6..7   | checksum             |
    8..    count × address (4 bytes IPv4, 16 bytes IPv6)
    v2 only: 8 bytes of authentication data (simple password, zero padded)

Checksums (RFC 1071 one's complement):

* v2: over the whole VRRP message including the authentication data (RFC 3768 §5.3.8).
* v3: over the RFC 2460 §8.1 style pseudo-header + the message (RFC 5798 §5.2.8). IPv4
  pseudo-header: src, dst, zero, protocol 112, VRRP length. IPv6: src, dst, 32-bit length,
  3 zero bytes, next header 112.
* keepalived's ``v3_checksum_as_v2``: v3 over IPv4 computed WITHOUT the pseudo-header, as
  Cisco and Juniper read RFC 5798 §5.2.8 (keepalived's manual says RFC 9568 wants it too).
  With ``Expect.v3_checksum_as_v2`` we accept either form on receive (keepalived itself stops
  verifying at all with the option; we keep checking) and
  ``encode(..., v3_checksum_as_v2=True)`` sends the pseudo-header-less form.
* keepalived's ``old_unicast_checksum``: v3 IPv4 *unicast* adverts whose pseudo-header used
  the multicast group 224.0.0.18 as destination (keepalived <= 1.3.6). ``Expect`` accepts both
  forms with the option (keepalived builds with OLD_CHKSUM_COMPAT auto-detect it; we only do so
  when configured); ``encode(..., old_unicast_checksum=True)`` sends the old one.

Validation order (first failure wins; every failure is an ``Invalid``, nothing raises):
truncated (shorter than the fixed header or than the address count implies) -> TTL = 255
(skipped for unicast, as keepalived) -> version -> type = 1 -> length (longer than expected;
Ethernet minimum-frame padding is allowed for IPv4 as keepalived allows it) -> checksum ->
VRID -> auth type / password (v2) -> advert interval equal to ours (v2 only: RFC 3768 §7.1
"MUST verify ... the locally configured", keepalived drops such packets) -> address list
(only in strict mode; otherwise keepalived merely warns, see ``addresses_match``).
RFC 3768 §7.1 orders VRID/auth before checksum in prose only; checking the checksum first
makes a corrupted packet count as a checksum error rather than a misleading auth error.

IPsec-AH (keepalived's ``auth_type AH``; RFC 2338 auth type 2, removed by RFC 3768): the AH
header itself is the transport's business (``lvsd.vrrp.ah``: ICV, SPI and sequence number are
checked before the payload gets here). ``decode(..., ip_proto=51)`` means "this payload came out
of a verified AH packet"; it must then be what the instance expects (keepalived
``vrrp_check_packet``: "Received AH header but auth type not AH" / "No AH header but auth type is
AH", both ``AUTH_TYPE``) and carry auth type 2; its 8 authentication bytes are not checked
(keepalived sends zeros and ignores them). ``encode`` of an AH advert writes auth type 2 and 8
zero bytes; the transport seals it.
"""

from __future__ import annotations

import enum
import hmac
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

__all__ = [
    "HEADER_LEN",
    "IPPROTO_AH",
    "IPPROTO_VRRP",
    "MCAST_GROUP4",
    "MCAST_GROUP6",
    "TTL",
    "V2_AUTH_LEN",
    "Advert",
    "AuthType",
    "Expect",
    "IPAddress",
    "Invalid",
    "InvalidReason",
    "addresses_match",
    "checksum",
    "decode",
    "encode",
    "peek_vrid",
]

IPAddress = IPv4Address | IPv6Address

IPPROTO_VRRP = 112
IPPROTO_AH = 51
TTL = 255  # RFC 3768 §5.2.3 / RFC 5798 §5.1.1.3
HEADER_LEN = 8
V2_AUTH_LEN = 8
ADVERT_TYPE = 1
MCAST_GROUP4 = IPv4Address("224.0.0.18")
MCAST_GROUP6 = IPv6Address("ff02::12")
V3_MAX_CENTIS = 0x0FFF
# keepalived: a frame shorter than ETH_ZLEN (60) is padded; the Ethernet header (14) is gone by
# the time we see it, and each VLAN tag (4) may have been stripped too.
_ETH_PAYLOAD_MIN = 46
_IPV4_HEADER_LEN = 20


class AuthType(enum.IntEnum):
    """VRRPv2 authentication type (RFC 2338 §5.3.6; RFC 3768 keeps 0 and reserves 1, 2)."""

    NONE = 0
    PASS = 1  # simple text password, 8 bytes zero padded
    AH = 2  # IPsec AH (RFC 2402 HMAC-MD5-96, keepalived's implementation: lvsd.vrrp.ah)


class InvalidReason(enum.StrEnum):
    """Why an advertisement was discarded. Values are stable: counters and the status page use
    them as keys."""

    TRUNCATED = "truncated"  # shorter than the header or the address count implies
    LENGTH = "length"  # longer than the address count implies (beyond Ethernet padding)
    TTL = "ttl"  # TTL / hop limit not 255 (multicast)
    VERSION = "version"  # not the configured version (or v2 over IPv6)
    TYPE = "type"  # type is not 1 (advertisement)
    FAMILY = "family"  # src/dst/addresses not all one address family
    CHECKSUM = "checksum"
    VRID = "vrid"  # not our virtual router
    AUTH_TYPE = "auth_type"  # v2 auth type differs from ours or is unknown
    AUTH_MISMATCH = "auth_mismatch"  # v2 password differs
    AUTH_UNSUPPORTED = "auth_unsupported"  # an AH header protecting another protocol
    ADVERT_INT = "advert_int"  # v2: interval differs from ours; v3: zero interval
    ADDR_COUNT = "addr_count"  # strict mode: address count differs from ours
    ADDR_LIST = "addr_list"  # strict mode: address list differs from ours


@dataclass(frozen=True, slots=True)
class Invalid:
    """A discarded packet: ``reason`` (the enum) and a human ``detail``."""

    reason: InvalidReason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


@dataclass(frozen=True, slots=True)
class Advert:
    """One VRRP advertisement.

    ``advert_int`` is in seconds: whole seconds 1..255 for v2 (one byte), a multiple of 0.01
    in 0.01..40.95 for v3 (12-bit centiseconds). ``auth_type``/``auth_data`` are v2 only;
    ``auth_data`` is the 8 bytes as on the wire (``encode`` zero-pads a shorter value).
    ``checksum`` is the received value (informational; ``encode`` ignores it).
    """

    version: int
    vrid: int
    priority: int
    advert_int: float
    addresses: tuple[IPAddress, ...] = ()
    auth_type: AuthType = AuthType.NONE
    auth_data: bytes = b""
    checksum: int = 0

    @property
    def advert_int_centis(self) -> int:
        """The interval in centiseconds (exact; floats only used for display/timing)."""
        return round(self.advert_int * 100)

    @property
    def family(self) -> int:
        """4 or 6, from the address list (4 when empty)."""
        return self.addresses[0].version if self.addresses else 4


@dataclass(frozen=True, slots=True)
class Expect:
    """What the receiving instance is configured for.

    ``vrid=None`` accepts any VRID (for a dispatcher that decodes first). ``advert_int`` is
    only compared for v2 (RFC 3768 §7.1). ``addresses`` is only enforced when ``strict``
    (keepalived's ``vrrp_strict``); otherwise a mismatch is a warning for the caller to count
    (``addresses_match``). ``check_ttl=False`` for unicast peers (keepalived skips the TTL
    check for unicast; it has its own min/max TTL per peer, see ``ttl_range``).
    """

    version: int = 2
    vrid: int | None = None
    auth_type: AuthType = AuthType.NONE
    auth_pass: bytes = b""
    advert_int: float | None = None
    addresses: tuple[IPAddress, ...] | None = None
    strict: bool = False
    check_ttl: bool = True
    ttl_range: tuple[int, int] | None = None
    v3_checksum_as_v2: bool = False
    old_unicast_checksum: bool = False
    allow_padding: bool = True


def checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 Internet checksum of ``data`` (odd length padded with a zero byte)."""
    buf = bytes(data)
    if len(buf) % 2:
        buf += b"\x00"
    total: int = sum(struct.unpack(f"!{len(buf) // 2}H", buf))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: IPAddress, dst: IPAddress, length: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, IPPROTO_VRRP, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, IPPROTO_VRRP)


def _pad_password(pw: bytes) -> bytes:
    return pw[:V2_AUTH_LEN].ljust(V2_AUTH_LEN, b"\x00")


def _coerce(addr: IPAddress | str) -> IPAddress:
    return addr if isinstance(addr, IPv4Address | IPv6Address) else ip_address(addr)


def encode(
    advert: Advert,
    src: IPAddress | str,
    dst: IPAddress | str,
    *,
    v3_checksum_as_v2: bool = False,
    old_unicast_checksum: bool = False,
) -> bytes:
    """Build the VRRP payload for ``advert`` sent from ``src`` to ``dst``.

    ``src``/``dst`` only matter for the v3 pseudo-header checksum. ``old_unicast_checksum``
    (keepalived's ``old_unicast_checksum``): a v3 IPv4 unicast advert's pseudo-header uses the
    multicast group 224.0.0.18 as destination, as keepalived < 1.3 did. Raises ``ValueError`` for
    an advert that cannot be represented (a programming or configuration error, never
    network input): bad version, VRID/priority out of range, interval not encodable, mixed
    address families, v2 over IPv6, more than 255 addresses.
    """
    s, d = _coerce(src), _coerce(dst)
    if advert.version not in (2, 3):
        raise ValueError(f"VRRP version must be 2 or 3, not {advert.version}")
    if not 1 <= advert.vrid <= 255:
        raise ValueError(f"VRID must be 1..255, not {advert.vrid}")
    if not 0 <= advert.priority <= 255:
        raise ValueError(f"priority must be 0..255, not {advert.priority}")
    if len(advert.addresses) > 255:
        raise ValueError(f"at most 255 addresses fit an advert, not {len(advert.addresses)}")
    fam = s.version
    if d.version != fam or any(a.version != fam for a in advert.addresses):
        raise ValueError("source, destination and addresses must share one address family")
    if advert.version == 2:
        if fam != 4:
            raise ValueError("VRRPv2 is IPv4 only (RFC 3768); use version 3 for IPv6")
        secs = advert.advert_int
        if secs != int(secs) or not 1 <= secs <= 255:
            raise ValueError(f"VRRPv2 advert_int must be whole seconds 1..255, not {secs}")
        word = struct.pack("!BB", int(advert.auth_type), int(secs))
    else:
        centis = advert.advert_int_centis
        if abs(centis - advert.advert_int * 100) > 1e-6 or not 1 <= centis <= V3_MAX_CENTIS:
            raise ValueError(
                f"VRRPv3 advert_int must be a multiple of 0.01 s in 0.01..40.95, "
                f"not {advert.advert_int}"
            )
        word = struct.pack("!H", centis & V3_MAX_CENTIS)
    head = bytes((advert.version << 4 | ADVERT_TYPE, advert.vrid, advert.priority,
                  len(advert.addresses))) + word
    body = b"".join(a.packed for a in advert.addresses)
    if advert.version == 2:
        # keepalived vrrp_build_vrrp_v2 copies the password for PASS only (AH: zeros)
        auth = (
            _pad_password(advert.auth_data)
            if advert.auth_type == AuthType.PASS
            else bytes(V2_AUTH_LEN)
        )
        body += auth
    msg = head + b"\x00\x00" + body
    if advert.version == 3 and not (fam == 4 and v3_checksum_as_v2):
        pdst = MCAST_GROUP4 if (old_unicast_checksum and fam == 4) else d
        csum = checksum(_pseudo_header(s, pdst, len(msg)) + msg)
    else:
        csum = checksum(msg)
    return head + struct.pack("!H", csum) + body


def peek_vrid(payload: bytes | bytearray | memoryview) -> int | None:
    """The VRID of a payload long enough to have one, else None (never raises)."""
    try:
        return payload[1] if len(payload) >= 2 else None
    # a released memoryview (ValueError), a multi-dimensional one (NotImplementedError)
    except (ValueError, TypeError, NotImplementedError):  # pragma: no cover - exotic buffers
        return None


def decode(
    payload: bytes | bytearray | memoryview,
    *,
    src: IPAddress | str,
    dst: IPAddress | str,
    ttl: int | None,
    expect: Expect | None = None,
    ip_proto: int = IPPROTO_VRRP,
) -> Advert | Invalid:
    """Validate and parse a received VRRP payload. Never raises: any problem is an ``Invalid``.

    ``ttl`` is the IPv4 TTL / IPv6 hop limit of the received packet (None: unknown, not
    checked). ``ip_proto`` is the IPv4 protocol number: 51 = the payload came out of an IPsec-AH
    packet the transport has verified (see the module docstring).
    """
    try:
        return _decode(bytes(payload), src, dst, ttl, expect or Expect(), ip_proto)
    except Exception as exc:  # pragma: no cover - belt and braces; property tests hunt these
        return Invalid(InvalidReason.TRUNCATED, f"undecodable packet ({type(exc).__name__})")


def _decode(
    buf: bytes,
    src_in: IPAddress | str,
    dst_in: IPAddress | str,
    ttl: int | None,
    ex: Expect,
    ip_proto: int,
) -> Advert | Invalid:
    r = InvalidReason
    try:
        src, dst = _coerce(src_in), _coerce(dst_in)
    except ValueError as exc:
        return Invalid(r.FAMILY, f"bad source/destination address: {exc}")
    fam = src.version
    if dst.version != fam:
        return Invalid(r.FAMILY, f"source {src} and destination {dst} differ in family")
    # keepalived vrrp_check_packet: the AH header must be there exactly when we expect AH
    if (ip_proto == IPPROTO_AH) != (ex.auth_type == AuthType.AH):
        return Invalid(r.AUTH_TYPE, "Received AH header but auth type not AH"
                       if ip_proto == IPPROTO_AH else "No AH header but auth type is AH")
    if len(buf) < HEADER_LEN:
        return Invalid(r.TRUNCATED, f"{len(buf)} bytes, the fixed header needs {HEADER_LEN}")
    vers, typ = buf[0] >> 4, buf[0] & 0x0F
    vrid, prio, count = buf[1], buf[2], buf[3]
    alen = 4 if fam == 4 else 16
    expected_len = HEADER_LEN + count * alen + (V2_AUTH_LEN if vers == 2 else 0)
    if len(buf) < expected_len:
        return Invalid(
            r.TRUNCATED,
            f"{len(buf)} bytes, but {count} addresses need {expected_len}",
        )
    # RFC 3768 §7.1 / RFC 5798 §7.1: MUST verify TTL/hop limit is 255.
    if ttl is not None:
        if ex.check_ttl and ttl != TTL:
            return Invalid(r.TTL, f"TTL/hop limit {ttl}, expected {TTL}")
        if not ex.check_ttl and ex.ttl_range is not None:
            lo, hi = ex.ttl_range
            if not lo <= ttl <= hi:
                return Invalid(r.TTL, f"TTL/hop limit {ttl} not in [{lo}, {hi}]")
    if vers != ex.version:
        return Invalid(r.VERSION, f"version {vers}, expected {ex.version}")
    if vers == 2 and fam == 6:
        return Invalid(r.VERSION, "VRRPv2 over IPv6 does not exist (RFC 3768)")
    if typ != ADVERT_TYPE:
        return Invalid(r.TYPE, f"type {typ}, expected {ADVERT_TYPE} (advertisement)")
    if len(buf) > expected_len:
        padded = (
            ex.allow_padding
            and fam == 4
            and _IPV4_HEADER_LEN + expected_len < _ETH_PAYLOAD_MIN
            and _IPV4_HEADER_LEN + len(buf) <= _ETH_PAYLOAD_MIN + 8
        )
        if not padded:
            return Invalid(r.LENGTH, f"{len(buf)} bytes, {count} addresses need {expected_len}")
        buf = buf[:expected_len]
    msg = buf[:expected_len]
    rx_csum = int.from_bytes(msg[6:8], "big")
    if vers == 3:
        ok = checksum(_pseudo_header(src, dst, len(msg)) + msg) == 0
        if not ok and fam == 4 and ex.v3_checksum_as_v2:
            ok = checksum(msg) == 0
        if not ok and fam == 4 and ex.old_unicast_checksum and dst != MCAST_GROUP4:
            ok = checksum(_pseudo_header(src, MCAST_GROUP4, len(msg)) + msg) == 0
    else:
        ok = checksum(msg) == 0
    if not ok:
        return Invalid(r.CHECKSUM, f"bad checksum 0x{rx_csum:04x}")
    if ex.vrid is not None and vrid != ex.vrid:
        return Invalid(r.VRID, f"VRID {vrid}, expected {ex.vrid}")
    addrs_raw = msg[HEADER_LEN : HEADER_LEN + count * alen]
    addresses: tuple[IPAddress, ...]
    if fam == 4:
        addresses = tuple(IPv4Address(addrs_raw[i : i + 4]) for i in range(0, len(addrs_raw), 4))
    else:
        addresses = tuple(
            IPv6Address(addrs_raw[i : i + 16]) for i in range(0, len(addrs_raw), 16)
        )
    auth_type = AuthType.NONE
    auth_data = b""
    if vers == 2:
        at, secs = msg[4], msg[5]
        if at not in (0, 1, 2):
            return Invalid(r.AUTH_TYPE, f"unknown auth type {at}")
        auth_type = AuthType(at)
        if auth_type != ex.auth_type:
            return Invalid(
                r.AUTH_TYPE, f"auth type {auth_type.name}, expected {ex.auth_type.name}"
            )
        auth_data = msg[expected_len - V2_AUTH_LEN : expected_len]
        if auth_type == AuthType.PASS and not hmac.compare_digest(
            auth_data, _pad_password(ex.auth_pass)
        ):
            return Invalid(r.AUTH_MISMATCH, "wrong password")
        if secs == 0:
            return Invalid(r.ADVERT_INT, "advert interval 0")
        if ex.advert_int is not None and secs != ex.advert_int:
            return Invalid(
                r.ADVERT_INT, f"advert interval {secs} s, ours {_fmt(ex.advert_int)} s"
            )
        interval = float(secs)
    else:
        # RFC 5798 §5.2.7: 4 reserved bits then 12 bits of centiseconds. A zero interval would
        # give a zero Master_Down_Interval; reject it (keepalived would divide timers by it).
        centis = int.from_bytes(msg[4:6], "big") & V3_MAX_CENTIS
        if centis == 0:
            return Invalid(r.ADVERT_INT, "advert interval 0")
        interval = centis / 100
    if ex.strict and ex.addresses is not None:
        if count != len(ex.addresses):
            return Invalid(r.ADDR_COUNT, f"{count} addresses, expected {len(ex.addresses)}")
        if set(addresses) != set(ex.addresses):
            return Invalid(r.ADDR_LIST, "address list differs from ours")
    return Advert(
        version=vers,
        vrid=vrid,
        priority=prio,
        advert_int=interval,
        addresses=addresses,
        auth_type=auth_type,
        auth_data=auth_data,
        checksum=rx_csum,
    )


def addresses_match(advert: Advert, configured: tuple[IPAddress, ...]) -> bool:
    """keepalived's "MAY verify" VIP check: same count and every configured VIP present.

    keepalived only logs a mismatch (and counts ``addr_list_err``) outside strict mode.
    """
    return len(advert.addresses) == len(configured) and set(configured) <= set(
        advert.addresses
    )


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)
