# mypy: disable-error-code="comparison-overlap"
"""vrrp_startup_delay, notify_priority_changes, track_process and dynamic_interfaces in the
sans-IO cores (machine, process tracker) on a scripted clock, and their keywords against
``keepalived -t``.

Times are dyadic fractions so float arithmetic is exact (v2, priority 100, advert_int 1:
Master_Down_Interval = 3 + 156/256, Skew_Time = 156/256).
"""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from lvsd.config.loader import load
from lvsd.vrrp.codec import Advert
from lvsd.vrrp.machine import (
    BecomeBackup,
    BecomeFault,
    BecomeMaster,
    PriorityChanged,
    RunNotify,
    State,
    VrrpMachine,
)
from lvsd.vrrp.params import TrackedProcess, VrrpParams, params_from_instance
from lvsd.vrrp.process_track import ProcessSpec, ProcessTracker, ProcInfo, matches, read_procs

pytestmark = pytest.mark.unit

ME = IPv4Address("192.0.2.1")
PEER = IPv4Address("192.0.2.2")
VIP = IPv4Address("192.0.2.100")
MDI_100 = 3 + 156 / 256
SKEW_100 = 156 / 256


def mk(**kw: Any) -> VrrpMachine:
    base: dict[str, Any] = dict(name="VI_1", vrid=51, addresses=(VIP,), primary_address=ME)
    base.update(kw)
    return VrrpMachine(VrrpParams(**base))


def adv(prio: int) -> Advert:
    return Advert(2, 51, prio, 1.0, (VIP,))


# ------------------------------------------------------------------ vrrp_startup_delay


def test_startup_delay_backup_waits_delay_plus_master_down_interval() -> None:
    m = mk()
    m.delayed_start = 8.0
    acts = m.start(0.0)
    assert m.state == State.BACKUP and RunNotify("BACKUP", 100) in acts
    assert m.next_deadline == 8.0 + MDI_100  # not 0 + MDI
    assert m.tick(MDI_100) == [] and m.state == State.BACKUP
    acts = m.tick(8.0 + MDI_100)
    assert m.state == State.MASTER and any(isinstance(a, BecomeMaster) for a in acts)


def test_startup_delay_adverts_are_processed_but_timer_counts_from_delay_end() -> None:
    m = mk()
    m.delayed_start = 8.0
    m.start(0.0)
    assert m.receive(adv(150), PEER, 2.0) == []
    assert m.master_address == PEER and m.master_priority == 150  # accepted as usual
    assert m.next_deadline == 8.0 + MDI_100
    m.receive(adv(0), PEER, 3.0)  # the master leaves: Skew_Time, still after the delay
    assert m.next_deadline == 8.0 + SKEW_100
    # after the delay the timer counts from now again
    m.receive(adv(150), PEER, 9.0)
    assert m.next_deadline == 9.0 + MDI_100


def test_startup_delay_address_owner_waits_for_the_delay_without_notify() -> None:
    m = mk(priority=255)
    m.delayed_start = 4.0
    acts = m.start(0.0)
    assert m.state == State.BACKUP and not any(isinstance(a, RunNotify) for a in acts)
    assert m.next_deadline == 4.0
    acts = m.tick(4.0)
    assert m.state == State.MASTER and RunNotify("MASTER", 255) in acts


def test_no_startup_delay_owner_is_master_at_once() -> None:
    m = mk(priority=255)
    m.delayed_start = 0.0  # already past
    m.start(1.0)
    assert m.state == State.MASTER


# ------------------------------------------------------------------ priority changes


def test_priority_change_reported_and_fifo_notify_only_when_asked() -> None:
    tp = (TrackedProcess("haproxy", 20),)
    quiet, loud = mk(track_processes=tp), mk(track_processes=tp, notify_priority_changes=True)
    for m in (quiet, loud):
        m.process("haproxy", False, 0.0)
        m.start(0.0)
    assert quiet.process("haproxy", True, 1.0) == [PriorityChanged(100, 120)]
    assert loud.process("haproxy", True, 1.0) == [PriorityChanged(100, 120),
                                                  RunNotify("BACKUP_PRIORITY", 120)]
    loud.tick(1.0 + MDI_100 + 1)
    assert loud.state == State.MASTER
    assert loud.process("haproxy", False, 9.0) == [PriorityChanged(120, 100),
                                                   RunNotify("MASTER_PRIORITY", 100)]
    assert loud.process("haproxy", False, 9.5) == []  # no change, nothing reported


# ------------------------------------------------------------------ track_process in the machine


def test_weight0_process_fault_and_back_reverse_and_unknown() -> None:
    m = mk(track_processes=(TrackedProcess("p"), TrackedProcess("r", 0, True)))
    m.start(0.0)  # unknown states count nothing
    assert m.state == State.BACKUP
    acts = m.process("p", False, 1.0)
    assert m.state == State.FAULT and any(isinstance(a, BecomeFault) for a in acts)
    assert m.fault_reasons() == ["tracked process p quorum not achieved"]
    acts = m.process("p", True, 2.0)
    assert m.state == State.BACKUP and any(isinstance(a, BecomeBackup) for a in acts)
    m.process("r", True, 3.0)  # reverse: up is the fault
    assert m.fault_reasons() == ["tracked process r quorum achieved (reverse)"]


def test_negative_weight_counts_while_lost_and_owner_never_changes() -> None:
    m = mk(track_processes=(TrackedProcess("p", -30),))
    m.process("p", True, 0.0)
    m.start(0.0)
    assert m.effective_priority == 100
    m.process("p", False, 1.0)
    assert m.effective_priority == 70 and m.state == State.BACKUP
    owner = mk(priority=255, track_processes=(TrackedProcess("p", -30),))
    owner.start(0.0)
    assert owner.process("p", False, 1.0) == [] and owner.effective_priority == 255


# ------------------------------------------------------------- unavailable (dynamic_interfaces)


def test_unavailable_starts_in_fault_and_recovers_to_backup() -> None:
    m = mk()
    why = "interface eth9 does not exist (dynamic_interfaces)"
    m.unavailable(why, 0.0)
    acts = m.start(0.0)
    assert m.state == State.FAULT and why in m.fault_reasons()
    assert any(isinstance(a, BecomeFault) and why in a.reason for a in acts)
    acts = m.unavailable(None, 5.0)
    assert m.state == State.BACKUP and m.next_deadline == 5.0 + MDI_100
    acts = m.tick(5.0 + MDI_100)
    assert m.state == State.MASTER
    acts = m.unavailable(why, 9.0)  # deleted again: priority 0, VIPs removed, FAULT
    assert m.state == State.FAULT and acts[0].priority == 0  # type: ignore[union-attr]


# ------------------------------------------------------------------ process tracker core


def test_matching_comm_full_command_and_param_match() -> None:
    p = ProcInfo(1, "sleep", ("/bin/sleep", "30", "--x=yz"))
    assert matches(ProcessSpec("a", "sleep"), p)
    assert not matches(ProcessSpec("a", "slee"), p)  # exact, not a pattern
    assert matches(ProcessSpec("a", "/bin/sleep", full_command=True), p)
    ex = dict(full_command=True)
    assert matches(ProcessSpec("a", "/bin/sleep", ("30", "--x=yz"), "exact", **ex), p)
    assert not matches(ProcessSpec("a", "/bin/sleep", ("30",), "exact", **ex), p)
    assert matches(ProcessSpec("a", "/bin/sleep", ("30",), "partial", **ex), p)
    assert not matches(ProcessSpec("a", "/bin/sleep", ("30", "--x"), "partial", **ex), p)
    assert matches(ProcessSpec("a", "/bin/sleep", ("30", "--x"), "initial", **ex), p)
    assert not matches(ProcessSpec("a", "/bin/sleep", ("3", "--x"), "initial", **ex), p)
    # param_match without parameters: the process must have none
    assert not matches(ProcessSpec("a", "/bin/sleep", None, "exact", **ex), p)
    assert matches(ProcessSpec("a", "/bin/sleep", None, "exact", **ex),
                   ProcInfo(2, "sleep", ("/bin/sleep",)))


def procs(n: int) -> list[ProcInfo]:
    return [ProcInfo(100 + i, "worker") for i in range(n)]


def test_quorum_first_scan_then_steps_without_delay() -> None:
    t = ProcessTracker([ProcessSpec("w", "worker", quorum=2, quorum_max=3)])
    assert t.observe(procs(1), 0.0) == [("w", False)]  # the startup scan always reports
    assert t.observe(procs(2), 1.0) == [("w", True)]
    assert t.observe(procs(3), 2.0) == []
    assert t.observe(procs(4), 3.0) == [("w", False)]  # above quorum_max
    assert t.observe(procs(2), 4.0) == [("w", True)]
    assert t.observe(procs(0), 5.0) == [("w", False)]
    assert t.next_deadline is None


def test_quorum_max_zero_means_must_not_run() -> None:
    t = ProcessTracker([ProcessSpec("w", "worker", quorum=0, quorum_max=0)])
    assert t.observe([], 0.0) == [("w", True)]
    assert t.observe(procs(1), 1.0) == [("w", False)]
    assert t.observe([], 2.0) == [("w", True)]


def test_terminate_delay_hides_a_restart_and_fork_delay_delays_up() -> None:
    t = ProcessTracker([ProcessSpec("w", "worker", fork_delay=0.5, terminate_delay=2.0)])
    assert t.observe(procs(1), 0.0) == [("w", True)]
    assert t.observe([], 1.0) == []  # lost: terminate timer
    assert t.next_deadline == 3.0
    assert t.observe(procs(1), 2.0) == []  # back before it fired: timer cancelled, no flap
    assert t.next_deadline is None and t.state("w") is True
    assert t.observe([], 3.0) == []
    assert t.tick(4.999) == []
    assert t.tick(5.0) == [("w", False)]
    assert t.observe(procs(1), 6.0) == []  # fork delay
    assert t.next_deadline == 6.5
    assert t.tick(6.5) == [("w", True)]


def test_expired_timer_re_evaluates_the_count() -> None:
    t = ProcessTracker([ProcessSpec("w", "worker", quorum=2, fork_delay=1.0)])
    t.observe(procs(1), 0.0)
    assert t.observe(procs(2), 1.0) == []  # reaching quorum: fork timer
    assert t.observe(procs(3), 1.5) == []
    assert t.tick(2.0) == [("w", True)]


def test_read_procs_sees_this_process() -> None:
    import os

    me = [p for p in read_procs(True) if p.pid == os.getpid()]
    assert len(me) == 1 and me[0].argv and "python" in me[0].argv[0]
    assert me[0].comm  # from /proc/PID/stat


# ------------------------------------------------------------------ config, against keepalived


CONF = """
global_defs {
  vrrp_startup_delay 2.5
  vrrp_notify_priority_changes
  dynamic_interfaces
}
vrrp_track_process HAP {
  process "my proc" -f "a b"
  param_match partial
  weight -20 reverse
  quorum 2
  quorum_max 3
  delay 0.5
  fork_delay 0.25
}
vrrp_track_process SLEEP {
  process sleep
  weight 300
  quorum_max -1
  terminate_delay 5000
  param_match sideways
}
vrrp_track_process NOPROC {
  quorum 2
}
vrrp_instance VI_1 {
  interface nosuch0
  virtual_router_id 51
  priority 100
  notify_priority_changes off
  track_process {
    HAP weight 10 noreverse
    SLEEP
    NOPE
    SLEEP
    HAP2 weight
  }
  virtual_ipaddress {
    192.0.2.100
  }
}
vrrp_instance VI_2 {
  interface nosuch0
  virtual_router_id 52
  virtual_ipaddress {
    192.0.2.101
  }
}
vrrp_sync_group G {
  group {
    VI_1
    VI_2
  }
  track_process {
    SLEEP weight x
  }
  notify_priority_changes bogus
}
"""


def test_keywords_model_and_messages_match_keepalived(tmp_path: Path) -> None:
    f = tmp_path / "k.conf"
    f.write_text(CONF)
    cfg = load(str(f))
    g = cfg.global_defs
    assert (g.vrrp_startup_delay, g.vrrp_notify_priority_changes, g.dynamic_interfaces) == (
        2.5, True, True)
    assert not cfg.unsupported
    vi1, vi2 = cfg.vrrp_instances
    hap, sleep = vi1.track_processes
    assert (hap.name, hap.weight, hap.reverse) == ("HAP", 10, False)
    assert hap.process.params == ("-f", "a b") and hap.process.param_match == "partial"
    assert (hap.process.quorum, hap.process.quorum_max) == (2, 3)
    assert (hap.process.fork_delay, hap.process.terminate_delay) == (0.25, 0.5)
    assert (sleep.name, sleep.weight, sleep.process.full_command) == ("SLEEP", 0, False)
    sg = cfg.vrrp_sync_groups[0]
    assert [r.name for r in sg.track_processes] == ["SLEEP"]
    # notify_priority_changes: instance, else sync group (invalid: unset), else global
    p1 = params_from_instance(vi1, g, sync_group=sg)
    p2 = params_from_instance(vi2, g, sync_group=sg)
    assert (p1.notify_priority_changes, p2.notify_priority_changes) == (False, True)
    assert [t.name for t in p2.track_processes] == ["SLEEP"]
    ours = sorted(str(d) for d in cfg.diagnostics if d.severity.value != "warning")
    if shutil.which("keepalived") is None:
        require("keepalived not installed")
    res = subprocess.run(["keepalived", "-t", "-f", str(f)], capture_output=True, text=True,
                         timeout=30)
    theirs = sorted(ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("("))
    assert ours == theirs


def test_daemon_runner_gets_the_startup_delay_processes_and_dynamic_flag(tmp_path: Path) -> None:
    from lvsd.daemon.vrrpset import make_runner, startup_delay_end, vrrp_groups

    f = tmp_path / "k.conf"
    f.write_text(CONF)
    cfg = load(str(f))
    assert startup_delay_end(cfg, 100.0) == 102.5
    (_key, (group, members)), = vrrp_groups(cfg).items()
    r = make_runner(cfg, group, members, transport="raw", on_event=lambda *a: None,
                    started_at=100.0)
    assert r.delayed_start == 102.5 and r.sync_group_name == "G"
    s1, s2 = r.specs
    assert s1.dynamic_interfaces and s2.dynamic_interfaces
    assert [p.name for p in s1.processes] == ["HAP", "SLEEP"]
    assert [p.name for p in s2.processes] == ["SLEEP"]  # from the sync group
    hap = s1.processes[0]
    assert (hap.process, hap.params, hap.quorum, hap.quorum_max) == ("my proc", ("-f", "a b"),
                                                                      2, 3)
