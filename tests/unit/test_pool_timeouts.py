"""``lvs_timeouts``: parsed as keepalived parses it, owned by the reconciler field by field.

The reconciler runs against the in-memory data plane, which holds the IPVS connection timeouts
with the kernel's defaults and write rules (a field left out keeps its value); the kernel itself
is exercised in the VM (tests/kernel/guest/test_timeouts.py). The messages of the parser are
keepalived 2.2.7's, checked against the real ``keepalived -t`` when it is installed.
"""

from __future__ import annotations

import logging
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import require
from lvsd.config.loader import loads
from lvsd.config.model import DiagKind, LvsTimeouts, Severity
from lvsd.dataplane import ipvs as ipvs_codec
from lvsd.dataplane.base import DataPlane, DataPlaneError, TimeoutHolder
from lvsd.dataplane.memory import KERNEL_DEFAULT_TIMEOUTS, MemoryDataPlane
from lvsd.dataplane.nftables import NftablesDataPlane
from lvsd.pool.reconciler import Reconciler, timeouts_write, wanted_timeouts
from lvsd.pool.table import (
    DestKey,
    DestSpec,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Timeouts,
)

pytestmark = pytest.mark.unit

A = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
R1 = DestKey("10.0.0.1", 80)
LOGGER = "lvsd.pool.reconciler"


def table(weight: int = 1) -> dict[ServiceKey, ServiceEntry]:
    return {A: ServiceEntry(ServiceSpec(A, "wlc"), {R1: DestSpec(R1, weight)})}


async def _nosleep(_: float) -> None:
    return None


def make(dp: DataPlane, timeouts: Timeouts | LvsTimeouts | None = None) -> Reconciler:
    rec = Reconciler(dp, sleep=_nosleep, clock=lambda: 1000.0, timeouts=timeouts)
    rec.set_desired(table())
    return rec


# ------------------------------------------------------------------------------ the parser

CONF = """global_defs {
    lvs_timeouts tcp 7200 udp 50
    lvs_timeouts tcpfin 30 tcp x
    lvs_timeouts udp
    lvs_timeouts tcp -1 foo udp 99999999 udp
}
"""
#: what keepalived 2.2.7 logs for CONF, line by line (global_parser.c lvs_timeouts and
#: lib/parser.c read_unsigned_func), and the class it reports each with
EXPECTED = [
    (3, "invalid number 'x'", DiagKind.INVALID_NUMBER),
    (3, "Invalid lvs_timeout tcp (x) - ignoring", DiagKind.GENERAL),
    (4, "lvs_timeouts requires at least one option", DiagKind.GENERAL),
    (5, "negative number '-1'", DiagKind.INVALID_NUMBER),
    (5, "Invalid lvs_timeout tcp (-1) - ignoring", DiagKind.GENERAL),
    (5, "Unknown option foo specified for lvs_timeouts", DiagKind.GENERAL),
    (5, "number '99999999' outside range [0, 2678400]", DiagKind.INVALID_NUMBER),
    (5, "Invalid lvs_timeout udp (99999999) - ignoring", DiagKind.GENERAL),
    (5, "No value specified for lvs_timeout udp - ignoring", DiagKind.GENERAL),
]


def test_parse_accumulates_skips_bad_options_and_words_errors_as_keepalived() -> None:
    cfg = loads(CONF, name="k.conf")
    t = cfg.global_defs.lvs_timeouts
    assert t is not None
    # valid options apply, bad ones are skipped, a later line's value of a field wins
    assert (t.tcp, t.tcp_fin, t.udp) == (7200, 30, 50)
    diags = [(d.pos.line if d.pos else 0, d.message, d.kind) for d in cfg.diagnostics]
    assert diags == EXPECTED
    # keepalived logs these and runs: errors, never fatal; the keyword is supported now
    assert {d.severity for d in cfg.diagnostics} == {Severity.ERROR}
    assert not [u for u in cfg.unsupported if u.keyword == "lvs_timeouts"]
    assert str(cfg.diagnostics[2]) == "(k.conf: Line 4) lvs_timeouts requires at least one option"


def test_parse_absent_zero_and_single_option() -> None:
    assert loads("global_defs {\n router_id a\n}\n").global_defs.lvs_timeouts is None
    # 0 is keepalived's "not set": the kernel's value is left
    zero = loads("global_defs {\n lvs_timeouts tcp 0 udp 0\n}\n")
    assert zero.global_defs.lvs_timeouts is None and not zero.diagnostics
    one = loads("global_defs {\n lvs_timeouts udp 2678400\n}\n").global_defs.lvs_timeouts
    assert one is not None and (one.tcp, one.tcp_fin, one.udp) == (None, None, 2678400)
    again = loads("global_defs {\n lvs_timeouts tcp 10 udp 20\n lvs_timeouts tcp 0\n}\n")
    t = again.global_defs.lvs_timeouts
    assert t is not None and (t.tcp, t.udp) == (None, 20)


def test_keepalived_logs_the_same_lines(tmp_path: Path) -> None:
    """The real keepalived -t on the same file: the same messages on the same lines."""
    exe = shutil.which("keepalived")
    require(None if exe else "needs keepalived (apt-get install keepalived)")
    assert exe is not None
    conf = tmp_path / "k.conf"
    conf.write_text(CONF)
    proc = subprocess.run([exe, "-t", "-f", str(conf), "-l", "-n", "-D"], capture_output=True,
                          text=True, timeout=60, check=False)
    got = [(int(m[1]), m[2]) for m in re.finditer(r"^\(Line (\d+)\) (.*)$",
                                                  proc.stdout + proc.stderr, re.M)]
    assert got == [(line, msg) for line, msg, _ in EXPECTED]


# ------------------------------------------------------------------------------ the pure diff


def test_pure_diff_wants_configured_then_saved_and_writes_only_differences() -> None:
    conf, saved = Timeouts(tcp=7200), Timeouts(tcp=900, udp=300)
    want = wanted_timeouts(conf, saved)
    assert want == Timeouts(tcp=7200, udp=300)  # udp: lvsd changed it, no longer configured
    assert timeouts_write(want, Timeouts(900, 120, 300)) == Timeouts(tcp=7200)
    assert timeouts_write(want, Timeouts(7200, 5, 300)).empty  # tcpfin is not lvsd's
    assert str(Timeouts(1, 2, 3)) == "tcp 1 tcpfin 2 udp 3"


def test_ipvs_codec_sends_only_the_fields_to_set_and_reads_the_answer() -> None:
    # IPVS_CMD_SET_CONFIG: u32 attributes 4 (tcp), 5 (tcp fin), 6 (udp), only those set
    raw = ipvs_codec.timeout_attrs(Timeouts(tcp=7200, udp=50))
    assert raw == struct.pack("=HHI", 8, 4, 7200) + struct.pack("=HHI", 8, 6, 50)
    assert ipvs_codec.timeout_attrs(Timeouts()) == b""
    # an IPVS_CMD_GET_CONFIG answer: netlink header, genl header, the three attributes
    attrs = b"".join(struct.pack("=HHI", 8, a, v) for a, v in ((4, 900), (5, 120), (6, 300)))
    msg = struct.pack("=IHHII", 20 + len(attrs), 0x20, 0, 1, 0) + struct.pack(
        "=BBH", ipvs_codec.CMD_GET_CONFIG, 1, 0) + attrs
    assert ipvs_codec.decode_timeouts(msg) == Timeouts(900, 120, 300)


def test_which_data_planes_hold_timeouts() -> None:
    assert isinstance(MemoryDataPlane(), TimeoutHolder)
    assert isinstance(ipvs_codec.IPVSDataPlane(), TimeoutHolder)
    assert not isinstance(NftablesDataPlane(), TimeoutHolder)  # documented: ignored there


# ------------------------------------------------------------------------------ the reconciler


async def test_start_writes_only_differing_fields_once_then_is_idempotent() -> None:
    dp = MemoryDataPlane()
    rec = make(dp, LvsTimeouts(tcp=7200, udp=300))  # udp already the kernel's value
    res = await rec.start()
    assert res.ok and res.timeouts == Timeouts(tcp=7200)
    assert res.descriptions[-1] == "set timeouts tcp 7200"
    assert dp.timeout_writes == [Timeouts(tcp=7200)]  # udp and tcpfin not written
    assert dp.timeouts == Timeouts(7200, 120, 300)
    for reason in ("sweep", "sweep", "change"):
        again = await rec.reconcile(reason)
        assert again.timeouts is None and again.ok
    assert dp.timeout_writes == [Timeouts(tcp=7200)]  # equal: never written again
    st = rec.status
    assert st.in_sync and st.timeouts_writes == 1 and st.repairs == 0
    assert st.timeouts_desired == Timeouts(tcp=7200, udp=300)
    assert st.timeouts_kernel == Timeouts(7200, 120, 300)
    assert st.timeouts_saved == Timeouts(tcp=900)  # what the kernel had before lvsd


async def test_start_adopts_equal_values_without_a_write() -> None:
    dp = MemoryDataPlane()
    dp.drift_timeouts(Timeouts(tcp=7200, udp=50))  # e.g. left by an earlier run
    rec = make(dp, Timeouts(tcp=7200, udp=50))
    res = await rec.start()
    assert res.ok and res.timeouts is None and dp.timeout_writes == []
    assert rec.status.in_sync


async def test_no_timeouts_configured_means_no_read_and_no_write() -> None:
    dp = MemoryDataPlane()
    rec = make(dp)
    await rec.start()
    await rec.reconcile("sweep")
    assert dp.timeout_reads == 0 and dp.timeout_writes == []
    assert rec.status.timeouts_desired is None and rec.status.in_sync


async def test_drift_by_hand_is_repaired_on_sweep_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    dp = MemoryDataPlane()
    rec = make(dp, Timeouts(tcp=7200, udp=50))
    await rec.start()
    dp.drift_timeouts(Timeouts(tcp=500, tcp_fin=7))  # ipvsadm --set 500 7 0
    reads = dp.timeout_reads
    change = await rec.reconcile("change")  # a health change does not read the timeouts
    assert change.timeouts is None and dp.timeout_reads == reads
    with caplog.at_level(logging.INFO, LOGGER):
        res = await rec.reconcile("sweep")
    assert res.timeouts == Timeouts(tcp=7200) and res.repairs == 1
    assert dp.timeouts == Timeouts(7200, 7, 50)  # tcpfin is not lvsd's: left as set by hand
    assert rec.status.repairs == 1
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert msgs == ["repair (drift found by sweep): set IPVS timeouts tcp 7200 "
                    "(kernel had tcp 500)"]


async def test_reload_change_removal_and_partial_removal(
        caplog: pytest.LogCaptureFixture) -> None:
    dp = MemoryDataPlane()
    rec = make(dp, Timeouts(tcp=7200, udp=50))
    await rec.start()
    assert rec.status.timeouts_saved == Timeouts(tcp=900, udp=300)
    # a reload changes one value: one write of that field, not a repair
    rec.set_timeouts(LvsTimeouts(tcp=3600, udp=50))
    res = await rec.reconcile("change")
    assert res.timeouts == Timeouts(tcp=3600) and res.repairs == 0
    # a reload drops the udp option: udp goes back to the kernel's value from before lvsd
    rec.set_timeouts(LvsTimeouts(tcp=3600))
    with caplog.at_level(logging.INFO, LOGGER):
        res = await rec.reconcile("change")
    assert res.timeouts == Timeouts(udp=300)
    assert "restoring the kernel's value from before lvsd" in caplog.text
    assert dp.timeouts == Timeouts(3600, 120, 300)
    assert rec.status.timeouts_saved == Timeouts(tcp=900)
    dp.drift_timeouts(Timeouts(udp=77))  # no longer lvsd's: left alone
    assert (await rec.reconcile("sweep")).timeouts is None
    # a reload drops the keyword: everything lvsd changed is put back, then nothing is owned
    rec.set_timeouts(None)
    res = await rec.reconcile("change")
    assert res.timeouts == Timeouts(tcp=900)
    assert dp.timeouts == Timeouts(900, 120, 77)
    st = rec.status
    assert st.timeouts_saved.empty and st.timeouts_desired is None and st.in_sync
    reads = dp.timeout_reads
    dp.drift_timeouts(Timeouts(tcp=1))
    assert (await rec.reconcile("sweep")).timeouts is None
    assert dp.timeouts.tcp == 1 and dp.timeout_reads == reads  # not even read any more


async def test_stop_restores_what_lvsd_changed_as_keepalived_does() -> None:
    dp = MemoryDataPlane()
    rec = make(dp, Timeouts(tcp=7200, udp=50))
    await rec.start()
    dp.drift_timeouts(Timeouts(tcp_fin=9))  # not lvsd's: stays
    await rec.stop()
    assert dp.timeouts == Timeouts(900, 9, 300)
    assert dp.timeout_writes[-1] == Timeouts(tcp=900, udp=300)
    assert rec.status.timeouts_saved.empty
    # nothing changed by lvsd (adopted equal values): stop writes nothing
    dp2 = MemoryDataPlane()
    dp2.drift_timeouts(Timeouts(tcp=7200))
    rec2 = make(dp2, Timeouts(tcp=7200))
    await rec2.start()
    await rec2.stop()
    assert dp2.timeout_writes == [] and dp2.timeouts.tcp == 7200


async def test_restart_adopts_and_cannot_restore_what_an_earlier_run_changed() -> None:
    """A new process knows only the kernel it finds: the values set by the previous run are
    adopted (no write, no traffic effect) and are its 'originals' (keepalived alike)."""
    dp = MemoryDataPlane()
    first = make(dp, Timeouts(tcp=7200))
    await first.start()  # and then killed: no stop
    second = make(dp, Timeouts(tcp=7200))
    await second.start()
    assert dp.timeout_writes == [Timeouts(tcp=7200)]
    second.set_timeouts(None)
    assert (await second.reconcile("change")).timeouts is None
    assert dp.timeouts.tcp == 7200


async def test_transient_failure_retried_persistent_one_is_an_alarm_until_fixed() -> None:
    dp = MemoryDataPlane()
    dp.fail_timeouts(2, transient=True, writes_only=True)
    rec = make(dp, Timeouts(udp=50))
    res = await rec.start()
    assert res.ok and dp.timeouts.udp == 50  # retried within the reconcile
    rec.set_timeouts(Timeouts(udp=60))
    dp.fail_timeouts(2, transient=False, writes_only=True)  # not retried: one per reconcile
    res = await rec.reconcile("change")
    assert not res.ok and res.timeouts is None
    assert [a.op for a in res.failed] == ["set timeouts udp 60"]
    st = rec.status
    assert not st.in_sync and [a.op for a in st.alarms] == ["set timeouts udp 60"]
    assert "Invalid argument" in st.alarms[0].error
    res = await rec.reconcile("change")  # tried again on the next reconcile, alarm counts up
    assert rec.status.alarms[0].count == 2
    res = await rec.reconcile("change")  # the fault is gone
    assert res.ok and res.timeouts == Timeouts(udp=60)
    assert rec.status.in_sync and rec.status.alarms == ()


async def test_read_failure_is_an_alarm_and_services_still_reconcile() -> None:
    dp = MemoryDataPlane()
    dp.fail_timeouts(10, transient=False)
    rec = make(dp, Timeouts(tcp=100))
    res = await rec.start()
    assert [a.op for a in res.failed] == ["get timeouts"]
    assert A in dp.table  # the table is programmed regardless
    assert not rec.status.in_sync


async def test_kernel_limit_refusal_is_named() -> None:
    """A value the kernel refuses (above INT_MAX/HZ) fails with the write named; the config
    parser's 31-day cap keeps configs far below it."""
    dp = MemoryDataPlane()
    rec = make(dp, Timeouts(tcp=2**31))
    res = await rec.start()
    assert [a.op for a in res.failed] == [f"set timeouts tcp {2**31}"]
    assert dp.timeouts == KERNEL_DEFAULT_TIMEOUTS


class _NoTimeouts:
    """A data plane without connection timeouts (what nftables is), over the memory one."""

    name = "nftables"

    def __init__(self) -> None:
        self.inner = MemoryDataPlane()
        self.refuse = self.inner.refuse
        self.dump = self.inner.dump
        self.apply = self.inner.apply
        self.apply_many = self.inner.apply_many
        self.stats = self.inner.stats
        self.close = self.inner.close


async def test_data_plane_without_timeouts_ignores_them_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    dp = _NoTimeouts()
    assert isinstance(dp, DataPlane) and not isinstance(dp, TimeoutHolder)
    rec = make(dp, Timeouts(tcp=7200))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, LOGGER):
        res = await rec.start()
        await rec.reconcile("sweep")
        await rec.reconcile("sweep")
    assert res.ok and A in dp.inner.table
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["lvs_timeouts (tcp 7200) ignored: the nftables data plane has no IPVS "
                      "connection timeouts (its connections follow conntrack's timeouts)"]
    st = rec.status
    assert st.in_sync and st.timeouts_ignored == warned[0] and st.timeouts_desired is None
    await rec.stop()  # nothing to restore, nothing raised


def test_memory_plane_follows_the_kernel_write_rules() -> None:
    from lvsd.dataplane.memory import set_timeouts

    have = Timeouts(900, 120, 300)
    assert set_timeouts(have, Timeouts(udp=0)) == have  # 0 keeps the value
    assert set_timeouts(have, Timeouts(tcp_fin=5)) == Timeouts(900, 5, 300)
    with pytest.raises(DataPlaneError, match="EINVAL"):
        set_timeouts(have, Timeouts(tcp=10, udp=2**31))
