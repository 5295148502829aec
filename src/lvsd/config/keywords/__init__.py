"""Keyword tables and readers: keyword tree -> the typed model, defaults resolved.

Theory of operation
-------------------
``TABLES`` lists, per block, every keyword keepalived 2.x accepts there, each with its grammar
:class:`~lvsd.config.grammar.Kind` and whether lvsd implements it. The grammar uses the
tables to build a tree; :class:`Builder` walks the tree and produces the model.

The package splits the way keepalived's parsers do; each module owns its blocks' tables and
their readers, and the readers fill typed keyword sets (``TypedDict``) that the model's
constructors check:

* :mod:`.common` (keepalived lib/parser.c): the value readers, :class:`Ctx`, the build state;
* :mod:`.global_defs` (global_parser.c): ``global_defs``, ``SSL``;
* :mod:`.vrrp_track` (vrrp_parser.c, vrrp_track.c): ``vrrp_script``, ``vrrp_track_file``,
  ``vrrp_track_process``;
* :mod:`.vrrp_instance` (vrrp_parser.c, vrrp.c): ``vrrp_instance``, ``vrrp_sync_group``;
* :mod:`.lvs` (check_parser.c, check_data.c): ``virtual_server_group``, ``virtual_server``,
  ``real_server``;
* :mod:`.checkers` (check_api.c, check_*.c): ``TCP_CHECK`` ... ``BFD_CHECK``, ``url``;
* :mod:`.bgp` (lvsd extension blocks, no keepalived counterpart): ``bgp_speaker``,
  ``bgp_announce``.

A keyword keepalived knows but lvsd does not implement becomes an
:class:`~lvsd.config.model.Unsupported` in the model, with one warning per keyword and
position. Invalid values are reported in keepalived's words and the default is kept.

Defaults and inheritance follow keepalived 2.x (check_data.c ``alloc_vs``/``alloc_rs``,
``validate_check_config``; check_api.c ``queue_checker``; vrrp.c
``vrrp_complete_instance``):

* virtual_server: connect_timeout 5 s, delay_loop 60 s, weight 1, quorum 1,
  hysteresis 0, lb_algo ``wlc`` (with "no scheduler set" when absent), lb_kind NAT (with
  "no forwarding method set"), no ``protocol`` on an address service means **UDP**
  ("no protocol set - defaulting to UDP"; the kernel's default for protocol 0); a
  ``persistence_timeout`` without a value, a zero port on a non-persistent service and a
  ``persistence_granularity`` without timeout all mean 360 s; quorum is clipped to the
  sum of real-server weights and hysteresis to quorum - 1.
* real_server inherits weight, lvs_method (+ tunnel options), inhibit_on_failure, alpha,
  retry, connect_timeout, delay_loop, warmup and delay_before_retry from its virtual
  server; a NAT real server without a port takes the virtual server's; a DR/TUN one
  whose port differs is reset to it; fwmark services clear DR/TUN ports.
* checkers inherit from their real server; retry defaults per checker (1; DNS_CHECK 3;
  MISC_CHECK 0), delay_before_retry per checker (1 s; HTTP_GET/SSL_GET 3 s; DNS_CHECK
  the delay_loop), warmup defaults to the delay_loop; ``nb_get_retry`` is ``retry``.
* vrrp_instance: priority 100, or 255 when ``state MASTER`` has no priority; no state
  means MASTER when priority is 255 else BACKUP; version, garp settings and multicast
  group come from global_defs; an IPv6 instance uses VRRPv3.

Messages are keepalived 2.2.7's own text, with the :class:`~lvsd.config.model.DiagKind` of its
``report_config_error()`` class; a bad number gives keepalived's two lines (the number reader's,
INVALID_NUMBER, then the handler's). Severity (what lvsd does with the config):

============================================================  ==================================
condition (keyword layer; host checks live elsewhere)          why keepalived does not run it
============================================================  ==================================
a keyword's value missing (``priority`` alone)                 lib/parser.c null_strvec() exits
                                                               (kind MISSING_PARAMETER)
vrrp_instance without ``virtual_router_id``                    vrrp.c chk_min_cfg() fails
no ``interface``, unless unicast peers and unicast_src_ip     chk_min_cfg(): "Unknown interface!"
no VIP in a VRRPv3 / IPv6 / strict instance                    vrrp_complete_instance() false
two instances sharing a VRID on the wire (same interface,      vrrp.c check_vrid_conflicts()
family, group; or same source and a common unicast peer)
============================================================  ==================================

All FATAL: keepalived's VRRP process stops (KEEPALIVED_EXIT_CONFIG), so lvsd does not start.
Everything else keepalived reports is ERROR (it logs and runs: skip, default, reset, clamp as
the message says, and lvsd applies the same). validate_check_config() (check_data.c) never
returns false in 2.2.7, so no checker condition is fatal; a ``virtual_server group`` naming an
undefined group is only logged by link_vsg_to_vs() (ipwrapper.c; ``keepalived -t`` exits 0),
so it is a WARNING and the virtual server is dropped. lvsd-only notices are WARNING, kind LVSD
(e.g. ``nb_get_retry`` outside HTTP_GET/SSL_GET: keepalived says Unknown keyword, lvsd applies
it as ``retry`` and says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from lvsd.config.grammar import Node, Tables
from lvsd.config.keywords.bgp import (
    BGP_ANNOUNCE_TABLE,
    BGP_NEIGHBOR_TABLE,
    BGP_SPEAKER_TABLE,
    ext_block,
    finish_bgp,
    read_bgp_speaker,
)
from lvsd.config.keywords.checkers import (
    CHECKER_KINDS,
    CHECKER_TABLES,
    read_hex,
    regex_flags,
)
from lvsd.config.keywords.common import Ctx, Parts, V, block, table
from lvsd.config.keywords.global_defs import GLOBAL_TABLE, SSL_TABLE, read_global, read_ssl
from lvsd.config.keywords.lvs import (
    REAL_SERVER_TABLE,
    VIRTUAL_SERVER_TABLE,
    read_virtual_server,
    read_vsg,
)
from lvsd.config.keywords.vrrp_instance import (
    AUTH_TABLE,
    SYNC_GROUP_TABLE,
    VRRP_INSTANCE_TABLE,
    finish_vrrp,
    read_instance,
    read_sync_group,
)
from lvsd.config.keywords.vrrp_track import (
    TRACK_FILE_TABLE,
    TRACK_PROCESS_TABLE,
    VRRP_SCRIPT_TABLE,
    read_track_file,
    read_track_process,
    read_vrrp_script,
)
from lvsd.config.model import SslGlobal

__all__ = ["CHECKER_KINDS", "TABLES", "Builder", "Ctx", "read_hex", "regex_flags"]

_ROOT = table(
    {
        "global_defs": block("global_defs"),
        "vrrp_script": block("vrrp_script"),
        "vrrp_track_file": block("track_file"),
        "track_file": block("track_file"),
        "vrrp_instance": block("vrrp_instance"),
        "vrrp_sync_group": block("vrrp_sync_group"),
        "vrrp_track_process": block("vrrp_track_process"),
        "virtual_server_group": V,
        "virtual_server": block("virtual_server"),
        "SSL": block("SSL"),
        "bgp_speaker": ext_block("bgp_speaker"),  # lvsd extension (docs/bgp.md)
        "bgp_announce": ext_block("bgp_announce"),  # lvsd extension (docs/bgp.md)
    },
    unsupported="net_namespace net_namespace_ipvs namespace_with_ipsets use_pid_dir instance "
    "child_wait_time linkbeat_use_polling process_names process_name vrrp_process_name "
    "checker_process_name lvs_process_name bfd_process_name use_symlink_paths",
    unsupported_values="static_ipaddress static_routes static_rules linkbeat_interfaces "
    "interface_up_down_delays",
    unsupported_blocks="bfd_instance garp_group track_group",
)

TABLES: Tables = {
    "root": _ROOT,
    "global_defs": GLOBAL_TABLE,
    "vrrp_script": VRRP_SCRIPT_TABLE,
    "track_file": TRACK_FILE_TABLE,
    "vrrp_instance": VRRP_INSTANCE_TABLE,
    "authentication": AUTH_TABLE,
    "vrrp_sync_group": SYNC_GROUP_TABLE,
    "vrrp_track_process": TRACK_PROCESS_TABLE,
    "SSL": SSL_TABLE,
    "virtual_server": VIRTUAL_SERVER_TABLE,
    "real_server": REAL_SERVER_TABLE,
    **CHECKER_TABLES,
    "bgp_speaker": BGP_SPEAKER_TABLE,
    "bgp_neighbor": BGP_NEIGHBOR_TABLE,
    "bgp_announce": BGP_ANNOUNCE_TABLE,
}


class Builder(Parts):
    """Turns the keyword tree into model objects (one instance per load): ``build(nodes)``,
    then ``finish_vrrp()``; the model is in the :class:`~lvsd.config.keywords.common.Parts`
    attributes."""

    def build(self, nodes: Iterable[Node]) -> None:
        ssl: SslGlobal | None = None
        pending_vrrp: list[Node] = []
        pending_vs: list[Node] = []
        pending_bgp: list[Node] = []  # bgp_announce names virtual servers: read after them
        for node in nodes:
            kw = node.keyword
            try:
                if node.spec is not None and not node.spec.supported:
                    self.ctx.unsupported_kw(node, "top level")
                elif kw == "global_defs":
                    read_global(self, node)
                elif kw == "vrrp_script":
                    read_vrrp_script(self, node)
                elif kw in ("vrrp_track_file", "track_file"):
                    read_track_file(self, node)
                elif kw == "vrrp_instance":
                    pending_vrrp.append(node)
                elif kw == "vrrp_sync_group":
                    read_sync_group(self, node)
                elif kw == "vrrp_track_process":
                    read_track_process(self, node)
                elif kw == "virtual_server_group":
                    read_vsg(self, node)
                elif kw == "virtual_server":
                    pending_vs.append(node)
                elif kw == "bgp_speaker":
                    read_bgp_speaker(self, node)
                elif kw == "bgp_announce":
                    pending_bgp.append(node)
                elif kw == "SSL":
                    if ssl is not None:
                        self.ctx.err(node.pos, "SSL context already specified - replacing")
                    ssl = read_ssl(self, node)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # pragma: no cover
                self.ctx.err(node.pos, f"internal error reading {kw}: {exc!r} - block ignored")
        if ssl is not None:
            self.global_defs = replace(self.global_defs, ssl=ssl)
        # instances and virtual servers need global_defs complete (keepalived applies the
        # globals after reading the whole file too)
        for node in pending_vrrp:
            try:
                read_instance(self, node)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # pragma: no cover
                self.ctx.err(node.pos, f"internal error reading vrrp_instance: {exc!r}")
        for node in pending_vs:
            try:
                read_virtual_server(self, node)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # pragma: no cover
                self.ctx.err(node.pos, f"internal error reading virtual_server: {exc!r}")
        try:
            finish_bgp(self, pending_bgp)
        except (ValueError, KeyError, IndexError, TypeError) as exc:  # pragma: no cover
            self.ctx.err(None, f"internal error reading bgp_announce: {exc!r}")

    def finish_vrrp(self) -> None:
        """Cross checks that need every block read (keepalived does them at the end too)."""
        finish_vrrp(self)
