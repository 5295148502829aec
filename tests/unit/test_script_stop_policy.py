"""The sans-IO stop policy of a running script (issue 16 item 5): a stop (reload, shutdown)
always ends in SIGKILL of the whole process group, whatever phase the script was in and
however its leader ended; a second stop request brings the SIGKILL forward."""

from __future__ import annotations

import signal

import pytest

from lvsd.scriptrun.termination import STOP_GRACE, Phase, Termination

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("returncode", [0, 3, -signal.SIGTERM, -signal.SIGKILL, -signal.SIGSEGV])
@pytest.mark.parametrize("timeouts", [0, 1, 2])  # running, in its kill grace, being killed
def test_a_stop_always_ends_in_sigkill_of_the_group(returncode: int, timeouts: int) -> None:
    t = Termination(0.0, 1.0)
    now = 0.0
    for _ in range(timeouts):
        assert t.deadline is not None
        now = t.deadline
        assert t.expire(now) is not None
    step = t.cancel(now + 0.1)
    assert step is not None and step.signo == signal.SIGTERM
    assert t.phase is Phase.STOPPING and t.deadline == now + 0.1 + STOP_GRACE
    assert t.exited(returncode).kill_group


def test_without_a_stop_an_exit_status_leaves_the_group_alone() -> None:
    # keepalived: a script that ends by itself may leave children; only a stop kills them
    t = Termination(0.0, 1.0)
    assert not t.exited(0).kill_group


def test_hasten_brings_the_sigkill_forward_once() -> None:
    t = Termination(0.0, 10.0)
    t.hasten(0.5)  # not stopping: nothing to bring forward
    assert t.deadline == 10.0 and not t.killed
    t.cancel(1.0)
    t.hasten(1.2)
    assert t.deadline == 1.2
    step = t.expire(1.2)
    assert step is not None and step.signo == signal.SIGKILL and t.killed
    t.hasten(1.3)  # already sent: the rekill cadence is kept
    assert t.deadline is not None and t.deadline > 1.3
