"""Throughput of the sans-IO VRRP core: codec encode/decode and machine event handling.

Prints figures, and ratios against a baseline measured in the same run (``bytes.fromhex`` of
the same payload, i.e. "how many times a trivial parse"), so numbers from different machines
compare. Run: ``.venv/bin/python bench/vrrp_core.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address

from lvsd.vrrp.codec import MCAST_GROUP4, Advert, decode, encode
from lvsd.vrrp.machine import VrrpMachine
from lvsd.vrrp.params import VrrpParams

SRC = IPv4Address("192.0.2.2")
VIPS = tuple(IPv4Address(f"192.0.2.{100 + i}") for i in range(4))


def rate(fn: Callable[[], object], seconds: float = 0.5) -> float:
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for _ in range(200):
            fn()
        n += 200
    return n / elapsed


def main() -> None:
    adv = Advert(2, 51, 150, 1.0, VIPS)
    payload = encode(adv, SRC, MCAST_GROUP4)
    hexed = payload.hex()
    params = VrrpParams(name="VI_1", vrid=51, addresses=VIPS, primary_address=IPv4Address(
        "192.0.2.1"))
    ex = params.expect()
    base = rate(lambda: bytes.fromhex(hexed))
    enc = rate(lambda: encode(adv, SRC, MCAST_GROUP4))
    dec = rate(lambda: decode(payload, src=SRC, dst=MCAST_GROUP4, ttl=255, expect=ex))
    bad = payload[:6] + b"\xff\xff" + payload[8:]
    dec_bad = rate(lambda: decode(bad, src=SRC, dst=MCAST_GROUP4, ttl=255, expect=ex))

    m = VrrpMachine(params)
    m.start(0.0)
    clock = [0.0]

    def rx() -> None:
        clock[0] += 0.001
        m.receive(adv, SRC, clock[0])

    recv = rate(rx)
    full = rate(lambda: m.receive(
        decode(payload, src=SRC, dst=MCAST_GROUP4, ttl=255, expect=ex), SRC, clock[0]))
    print(f"baseline bytes.fromhex      {base:12,.0f}/s")
    for name, r in [("codec.encode (4 VIPs)", enc), ("codec.decode valid", dec),
                    ("codec.decode bad checksum", dec_bad), ("machine.receive (backup)", recv),
                    ("decode + receive", full)]:
        print(f"{name:27s} {r:12,.0f}/s   {base / r:6.1f}x baseline cost")
    # One advert per second per instance is VRRP's normal load; show the headroom.
    print(f"adverts/s one core could process end-to-end: {full:,.0f} "
          f"(= {full:,.0f} instances at advert_int 1 s)")


if __name__ == "__main__":
    main()
