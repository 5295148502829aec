"""``vrrp_track_process``: is a process running, in what number (keepalived semantics).

API summary
-----------
``ProcessSpec``                 one ``vrrp_track_process`` (``spec_from_model``: from the config)
``ProcInfo(pid, comm, argv)``   one running process as /proc shows it
``matches(spec, proc)``         keepalived's match (name, or argv[0] + parameters)
``ProcessTracker(specs)``       the sans-IO core: ``observe(procs, now)`` and ``tick(now)``
                                return ``[(name, quorum_up), ...]``; ``next_deadline``
``read_procs(need_cmdline)``    the I/O: one scan of /proc (``ProcInfo`` list)

Theory of operation
-------------------
Matching (keepalived core/track_process.c ``read_procs``/``check_params``): without
``full_command`` the process name (``comm``, /proc/PID/stat, at most 15 characters) must equal
``process`` exactly (no pattern: ``ssh`` does not match ``sshd``); with ``full_command`` (set by
giving parameters or ``param_match``) ``argv[0]`` must equal it, and then the parameters:
``exact`` (the default when parameters are given) the same list; ``partial`` the configured ones
are the first ones; ``initial`` as ``partial`` but the last configured parameter may be the
start of the real one. ``param_match`` without parameters means: no parameters. Zombies never
count.

Quorum (keepalived ``check_process_fork``/``check_process_termination``): the tracker counts
the matching processes ``n``; the quorum is held while ``quorum <= n <= quorum_max``. Each
process that appears is a "fork" step (``n += 1``), each that goes a "termination" step
(``n -= 1``). A step that crosses a bound (``n`` reaching ``quorum`` or ``quorum_max + 1`` up,
leaving ``quorum`` or reaching ``quorum_max`` down) cancels a pending timer of the other kind
(nothing else: the change undoes it) or, with ``fork_delay`` (up) / ``terminate_delay`` (down),
starts a timer at whose expiry the quorum is re-evaluated from ``n``; without a delay the new
state applies at once. The first observation sets the state without delay (keepalived's
``init_track_processes`` scan at startup); the result is reported only when it changes (plus the
first observation, to initialise the instances: "Quorum gained/lost for tracked process").

Why /proc polling rather than keepalived's netlink proc connector: the connector only exists in
the initial network namespace (the kernel's connector socket lives in ``init_net``) and needs
CAP_NET_ADMIN there, while lvsd also runs inside network namespaces and containers. The shell
(``vrrp.runner``) therefore scans /proc every ``process_poll_interval`` (0.5 s): a process
that appears or goes is seen at most that late, and a restart faster than one poll interval
is not seen at all (which ``terminate_delay`` exists to hide in keepalived anyway). The scan
reads /proc/PID/stat of every process (the name and the zombie state), and /proc/PID/cmdline
only if some tracked process uses ``full_command``, as keepalived does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ProcInfo", "ProcessSpec", "ProcessTracker", "matches", "read_procs",
           "spec_from_model"]


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    name: str
    process: str
    params: tuple[str, ...] | None = None
    param_match: str = "none"  # none | exact | partial | initial
    full_command: bool = False
    quorum: int = 1
    quorum_max: int | None = None  # None: unbounded
    fork_delay: float = 0.0
    terminate_delay: float = 0.0

    def have_quorum(self, n: int) -> bool:
        return n >= self.quorum and (self.quorum_max is None or n <= self.quorum_max)


def spec_from_model(tp: Any) -> ProcessSpec:
    """From ``lvsd.config.model.VrrpTrackProcess`` (duck-typed: no import cycle)."""
    return ProcessSpec(tp.name, tp.process, tp.params, tp.param_match, tp.full_command,
                       tp.quorum, tp.quorum_max, tp.fork_delay, tp.terminate_delay)


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    comm: str
    argv: tuple[str, ...] = ()


def _joined(params: Sequence[str]) -> bytes:
    return b"".join(p.encode() + b"\0" for p in params)


def matches(spec: ProcessSpec, proc: ProcInfo) -> bool:
    """keepalived core/track_process.c ``read_procs`` + ``check_params``."""
    if not spec.full_command:
        return proc.comm == spec.process
    if not proc.argv or proc.argv[0] != spec.process:
        return False
    if spec.param_match == "none":
        return True
    have = _joined(proc.argv[1:])
    want = _joined(spec.params) if spec.params else b""
    if spec.param_match == "exact":
        return have == want
    if len(have) < len(want):
        return False
    if not spec.params:
        return True
    if spec.param_match == "partial":
        return have.startswith(want)
    return have.startswith(want[:-1])  # initial: the last parameter may continue


class _Track:
    __slots__ = ("fork_at", "n", "spec", "term_at", "up")

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self.n: int | None = None  # unknown until the first observation
        self.up: bool | None = None
        self.fork_at: float | None = None
        self.term_at: float | None = None


class ProcessTracker:
    """The quorum of every tracked process; see the module docstring."""

    def __init__(self, specs: Iterable[ProcessSpec]) -> None:
        self._tracks = {s.name: _Track(s) for s in specs}

    @property
    def specs(self) -> list[ProcessSpec]:
        return [t.spec for t in self._tracks.values()]

    @property
    def need_cmdline(self) -> bool:
        return any(t.spec.full_command for t in self._tracks.values())

    def counts(self) -> dict[str, int | None]:
        return {name: t.n for name, t in self._tracks.items()}

    def state(self, name: str) -> bool | None:
        return self._tracks[name].up

    @property
    def next_deadline(self) -> float | None:
        times = [d for t in self._tracks.values() for d in (t.fork_at, t.term_at)
                 if d is not None]
        return min(times) if times else None

    def observe(self, procs: Iterable[ProcInfo], now: float) -> list[tuple[str, bool]]:
        """One scan of the running processes: the quorum changes it causes."""
        plist = list(procs)
        out: list[tuple[str, bool]] = []
        for name, t in self._tracks.items():
            n = sum(1 for p in plist if matches(t.spec, p))
            if t.n is None:  # startup scan: no delay (keepalived init_track_processes)
                t.n = n
                t.up = t.spec.have_quorum(n)
                out.append((name, t.up))
                continue
            while t.n < n:
                self._fork(t, now, out)
            while t.n > n:
                self._terminate(t, now, out)
        out += self.tick(now)
        return out

    def tick(self, now: float) -> list[tuple[str, bool]]:
        """Expired fork/terminate delays: re-evaluate the quorum (keepalived
        ``process_gained_quorum_timer_thread`` / ``process_lost_quorum_timer_thread``)."""
        out: list[tuple[str, bool]] = []
        for name, t in self._tracks.items():
            for attr in ("fork_at", "term_at"):
                due = getattr(t, attr)
                if due is not None and due <= now:
                    setattr(t, attr, None)
                    assert t.n is not None
                    self._set(t, t.spec.have_quorum(t.n), out, name)
        return out

    def _set(self, t: _Track, up: bool, out: list[tuple[str, bool]], name: str) -> None:
        if up != t.up:
            t.up = up
            out.append((name, up))

    def _fork(self, t: _Track, now: float, out: list[tuple[str, bool]]) -> None:
        assert t.n is not None
        t.n += 1
        qmax = t.spec.quorum_max
        if t.n == t.spec.quorum or (qmax is not None and t.n == qmax + 1):
            if t.term_at is not None:
                t.term_at = None  # keepalived: cancel the terminate timer, nothing else
            elif t.spec.fork_delay:
                t.fork_at = now + t.spec.fork_delay
            else:
                self._set(t, t.n == t.spec.quorum, out, t.spec.name)

    def _terminate(self, t: _Track, now: float, out: list[tuple[str, bool]]) -> None:
        assert t.n is not None
        before = t.n
        t.n -= 1
        qmax = t.spec.quorum_max
        if before == t.spec.quorum or (qmax is not None and t.n == qmax):
            if t.fork_at is not None:
                t.fork_at = None  # keepalived: cancel the fork timer, nothing else
            elif t.spec.terminate_delay:
                t.term_at = now + t.spec.terminate_delay
            else:
                self._set(t, qmax is not None and t.n == qmax, out, t.spec.name)


def read_procs(need_cmdline: bool, root: str = "/proc") -> list[ProcInfo]:
    """One scan of /proc: every process but zombies, with argv if ``need_cmdline``."""
    out: list[ProcInfo] = []
    try:
        entries = os.listdir(root)
    except OSError:
        return out
    for ent in entries:
        if not ent.isdigit():
            continue
        try:
            with open(f"{root}/{ent}/stat", "rb") as f:
                stat = f.read(512)
            argv: tuple[str, ...] = ()
            if need_cmdline:
                with open(f"{root}/{ent}/cmdline", "rb") as f:
                    raw = f.read()
                argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0")[:-1])
        except OSError:
            continue  # gone meanwhile, or not readable
        lp, rp = stat.find(b"("), stat.rfind(b")")
        if lp < 0 or rp < 0 or stat[rp + 2:rp + 3] == b"Z":
            continue
        out.append(ProcInfo(int(ent), stat[lp + 1:rp].decode(errors="replace"), argv))
    return out
