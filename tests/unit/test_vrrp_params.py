"""VrrpParams validation, RFC timer formulas, and params_from_instance (config model -> params)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from lvsd.config.model import (
    GlobalDefs,
    Pos,
    Script,
    TrackRef,
    UnicastPeer,
    VirtualIp,
    VrrpInstance,
    VrrpScript,
    VrrpState,
)
from lvsd.vrrp.codec import AuthType
from lvsd.vrrp.params import TrackedInterface, TrackedScript, VrrpParams, params_from_instance

pytestmark = pytest.mark.unit

VIP = IPv4Address("192.0.2.100")


def p(**kw: Any) -> VrrpParams:
    base: dict[str, Any] = dict(name="VI_1", vrid=51, addresses=(VIP,))
    base.update(kw)
    return VrrpParams(**base)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"version": 4}, "version must be 2 or 3"),
        ({"vrid": 0}, "virtual_router_id must be 1..255"),
        ({"vrid": 256}, "virtual_router_id"),
        ({"priority": 0}, "priority must be 1..255"),
        ({"advert_int": 0.5}, "whole seconds"),
        ({"version": 3, "advert_int": 0.001}, "multiple of 0.01"),
        ({"version": 3, "advert_int": 50.0}, "multiple of 0.01"),
        ({"addresses": (VIP, IPv6Address("fd00::1")), "version": 3}, "mix IPv4 and IPv6"),
        ({"addresses": (IPv6Address("fd00::1"),)}, "IPv6 needs VRRP version 3"),
        ({"initial_state": "FAULT"}, "state must be MASTER or BACKUP"),
        ({"preempt_delay": -1.0}, "preempt_delay"),
        ({"down_timer_adverts": 0}, "down_timer_adverts"),
        ({"auth_type": AuthType.AH, "version": 3}, "only in VRRPv2"),
        ({"auth_type": AuthType.PASS, "version": 3}, "only in VRRPv2"),
        ({"garp_master_delay": -1.0}, "garp_master_delay"),
    ],
)
def test_validation_names_the_instance_and_field(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(ValueError, match=msg) as ei:
        p(**kw)
    assert "vrrp_instance VI_1" in str(ei.value)


def test_tracker_validation() -> None:
    with pytest.raises(ValueError, match="weight 300"):
        TrackedInterface("eth0", 300)
    with pytest.raises(ValueError, match="rise and fall"):
        TrackedScript("s", rise=0)


def test_timer_formulas() -> None:
    v2 = p(priority=100)
    assert v2.skew_time(100, 1.0) == 156 / 256  # RFC 3768 §6.1
    assert v2.master_down_interval(100, 1.0) == 3 + 156 / 256
    v3 = p(version=3, advert_int=0.5)
    assert v3.skew_time(100, 0.5) == 156 * 0.5 / 256  # RFC 5798 §6.1
    assert p(priority=255).skew_time(200, 1.0) == 1 / 256  # owner always skews as 255
    assert p(down_timer_adverts=1).master_down_interval(100, 1.0) == 1 + 156 / 256


def test_expect_reflects_params() -> None:
    ex = p(auth_type=AuthType.PASS, auth_pass=b"pw", unicast=True, strict=True).expect()
    assert (ex.version, ex.vrid, ex.auth_type, ex.auth_pass, ex.advert_int) == (
        2, 51, AuthType.PASS, b"pw", 1.0)
    assert ex.check_ttl is False and ex.strict is True and ex.addresses == (VIP,)
    assert p(version=3).expect().advert_int is None  # v3 does not drop on interval


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(p(auth_type=AuthType.PASS, auth_pass=b"hunter2"))


def _inst(**kw: Any) -> VrrpInstance:
    base: dict[str, Any] = dict(
        name="VI_1", interface="eth0", virtual_router_id=51, pos=Pos("k.conf", 10),
        virtual_ipaddresses=(VirtualIp("192.0.2.100", 24),))
    base.update(kw)
    return VrrpInstance(**base)


def test_params_from_instance_basic() -> None:
    inst = _inst(priority=150, advert_int=2.0, auth_type="PASS", auth_pass="longpassword",
                 mcast_src_ip="192.0.2.1", garp_master_repeat=2, preempt_delay=5.0)
    pr = params_from_instance(inst, GlobalDefs())
    assert pr.vrid == 51 and pr.priority == 150 and pr.advert_int == 2.0
    assert pr.addresses == (VIP,) and pr.primary_address == IPv4Address("192.0.2.1")
    assert pr.auth_type == AuthType.PASS and pr.auth_pass == b"longpass"  # 8 bytes on the wire
    assert pr.track_interfaces == (TrackedInterface("eth0", 0),)  # own interface, weight 0
    assert pr.garp_master_repeat == 2 and pr.preempt and pr.preempt_delay == 5.0


def test_params_from_instance_state_master_clears_nopreempt() -> None:
    pr = params_from_instance(_inst(state=VrrpState.MASTER, nopreempt=True, preempt_delay=3.0))
    assert pr.initial_state == "MASTER" and pr.preempt and pr.preempt_delay == 0.0
    pr = params_from_instance(_inst(state=VrrpState.BACKUP, nopreempt=True))
    assert not pr.preempt


def test_params_from_instance_tracking() -> None:
    scripts = {
        "chk": VrrpScript("chk", Script("/bin/true"), weight=-20, rise=3, fall=2),
        "gate": VrrpScript("gate", Script("/bin/true"), init_fail=True),
    }
    inst = _inst(
        dont_track_primary=True,
        track_interfaces=(TrackRef("eth1", 10), TrackRef("eth2")),
        track_scripts=(TrackRef("chk"), TrackRef("gate"), TrackRef("chk", 5, reverse=True)),
    )
    pr = params_from_instance(inst, scripts=scripts)
    assert pr.track_interfaces == (TrackedInterface("eth1", 10), TrackedInterface("eth2", 0))
    assert pr.track_scripts == (
        TrackedScript("chk", -20, False, 3, 2, False),
        TrackedScript("gate", 0, False, 1, 1, True),
        TrackedScript("chk", 5, True, 3, 2, False),
    )


def test_params_from_instance_errors_name_the_position() -> None:
    with pytest.raises(ValueError, match=r"VI_1 \(k.conf:10\).*no vrrp_script"):
        params_from_instance(_inst(track_scripts=(TrackRef("missing"),)))
    ah = params_from_instance(_inst(auth_type="AH", auth_pass="x"))
    assert ah.auth_type == AuthType.AH and ah.ah_key == b"x" + bytes(7)
    # keepalived: "Authentication specified but no password given. Ignoring"
    assert params_from_instance(_inst(auth_type="AH")).auth_type == AuthType.NONE
    with pytest.raises(ValueError, match=r"k\.conf:10"):
        params_from_instance(_inst(virtual_router_id=300))


def test_params_from_instance_v3_ipv6_unicast_strict() -> None:
    inst = _inst(version=3, family=6, advert_int=0.5, auth_type="PASS", auth_pass="x",
                 virtual_ipaddresses=(VirtualIp("fd00::100", 64),),
                 unicast_src_ip="fd00::1", unicast_peers=(UnicastPeer("fd00::2"),),
                 strict_mode=True, higher_prio_send_advert=True)
    pr = params_from_instance(inst)
    assert pr.version == 3 and pr.family == 6 and pr.auth_type == AuthType.NONE
    assert pr.unicast and pr.strict and pr.lower_prio_no_advert
    assert not pr.higher_prio_send_advert


def test_params_from_instance_sync_group_tracking() -> None:
    from lvsd.config.model import VrrpSyncGroup

    scripts = {
        "w": VrrpScript("w", Script("/bin/true"), weight=-20),
        "z": VrrpScript("z", Script("/bin/true")),
    }
    inst = _inst(track_interfaces=(TrackRef("eth1", 10),), track_scripts=(TrackRef("w"),))
    g = VrrpSyncGroup("G", ("VI_1",), track_interfaces=(TrackRef("eth9", -5),),
                      track_scripts=(TrackRef("z"),))
    pr = params_from_instance(inst, scripts=scripts, sync_group=g)
    # keepalived: no weights inside a sync group (interfaces -> weight 0, weighted scripts off)
    assert pr.track_interfaces == (TrackedInterface("eth0", 0), TrackedInterface("eth1", 0),
                                   TrackedInterface("eth9", 0))
    assert pr.track_scripts == (TrackedScript("z"),)
    gw = VrrpSyncGroup("G", ("VI_1",), sync_group_tracking_weight=True,
                       track_interfaces=(TrackRef("eth9", -5),))
    pr = params_from_instance(inst, scripts=scripts, sync_group=gw)
    assert TrackedInterface("eth9", -5) in pr.track_interfaces
    assert TrackedScript("w", -20) in pr.track_scripts
