"""``lb_algo mh`` with ``mh-fallback`` / ``mh-port`` (the BGP mode's scheduler, docs/bgp.md) end
to end: the keepalived syntax and messages (check_parser.c lbflags_handler), the service spec the
planner makes, the kernel's flag bits (IP_VS_SVC_F_SCHED_MH_FALLBACK = SCHED1, _MH_PORT =
SCHED2) and what the nftables data plane makes of it."""

from __future__ import annotations

from lvsd.config.loader import loads
from lvsd.config.model import Severity
from lvsd.dataplane.ipvs import F_SCHED1, F_SCHED2, flag_bits, flag_names
from lvsd.dataplane.nftables import NftablesDataPlane, _hash_expr
from lvsd.pool.planner import service_keys, service_spec


def conf(body: str) -> str:
    return ("virtual_server 10.0.0.100 80 {\n    protocol TCP\n    lb_kind NAT\n" + body +
            "    real_server 10.0.0.2 80 {\n    }\n}\n")


def errors(text: str) -> list[str]:
    cfg = loads(text, name="k.conf")
    return [d.message for d in cfg.diagnostics if d.severity is not Severity.WARNING]


def test_mh_flags_reach_the_kernel_bits_and_back() -> None:
    cfg = loads(conf("    lb_algo mh\n    mh-fallback\n    mh-port\n"))
    vs = cfg.virtual_servers[0]
    assert vs.lb_algo == "mh" and vs.sched_flags == {"mh-fallback", "mh-port"}
    ((key, _),) = service_keys(vs, cfg)
    spec = service_spec(key, vs)
    assert spec.scheduler == "mh" and spec.flags == {"mh-fallback", "mh-port"}
    bits = flag_bits(spec)
    assert bits == F_SCHED1 | F_SCHED2
    assert flag_names(bits, "mh") == {"mh-fallback", "mh-port"}
    # nftables: accepted, done as a jhash of address and port, with a warning saying so
    nft = NftablesDataPlane()
    assert nft.refuse(spec) is None
    assert _hash_expr(spec, 4) == "jhash ip saddr . th sport mod 4 seed 0x0"
    warning = nft.warning(spec)
    assert warning is not None and "not a consistent hash" in warning


def test_flag_messages_are_keepalived_s() -> None:
    # keepalived decides with the scheduler set so far; its message always names "sh"
    assert errors(conf("    lb_algo rr\n    mh-port\n")) == [
        "mh-port only applies to sh scheduler - ignoring"]
    assert errors(conf("    mh-fallback\n    lb_algo mh\n")) == [
        "mh-fallback only applies to sh scheduler - ignoring"]
    # the other hashing scheduler's flag is ignored silently
    cfg = loads(conf("    lb_algo mh\n    sh-port\n"))
    assert not [d for d in cfg.diagnostics if d.severity is not Severity.WARNING]
    assert cfg.virtual_servers[0].sched_flags == frozenset()
