"""Does a configuration run? One decision for ``lvsd run``, a SIGHUP reload and
``lvsd check-config``.

Theory of operation
-------------------
keepalived reads a file and *keeps running* through almost everything it complains about: an
unknown keyword is skipped, an invalid value is ignored or reset to the default, a duplicate
is dropped, each with one log line ``(FILE: Line N) message`` (lib/parser.c
``report_config_error``). Only a few classes stop it: the main file missing, an interface
that does not exist (vrrp_daemon.c: "Non-existent interface specified in configuration", the
VRRP process exits with KEEPALIVED_EXIT_CONFIG), and what ``vrrp_complete_init()`` /
``validate_check_config()`` refuse. lvsd follows that policy:

* every stage (loader, the semantic checks of the running parts, the host checks) yields
  :class:`~lvsd.config.model.Diagnostic` objects; the loader has already *applied* each ERROR
  exactly as keepalived does (skip, default, reset, clamp), so the model is what keepalived
  would run;
* :func:`decide` merges them, sorts them by position (files in the order they were read,
  then line) and says whether the config runs: it runs unless a diagnostic is FATAL, or, with
  ``strict`` (opt-in, for CI pipelines), unless anything is an ERROR;
* the exit code is what ``keepalived -t`` means by its codes (main.c ``config_test_exit``):
  4 the config cannot run, 6 script security, 5 errors keepalived logs and runs through, 0 clean.
  keepalived's own ``-t`` keeps the numerically largest ``config_err_t``, so a GENERAL_ERROR
  after a BAD_IF exits 5 although its VRRP process would then refuse to start; lvsd exits 4
  whenever the config would not run (``check-config`` predicts ``run``).

WARNING diagnostics are lvsd's own notices (a keyword lvsd does not implement, a lvsd
extension in use); they never change the verdict or the exit code.

Pure: no I/O. The shells (``lvsd.config.checkcmd`` and the daemon) gather the diagnostics and
print or log what :func:`decide` returns.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lvsd.config.model import Config, DiagKind, Diagnostic, Pos, Severity

EXIT_OK = 0
EXIT_FATAL = 4  # keepalived KEEPALIVED_CHK_EXIT_CONFIG: cannot run
EXIT_ERRORS = 5  # KEEPALIVED_CHK_EXIT_CONFIG_TEST: errors, runs
EXIT_SECURITY = 6  # KEEPALIVED_CHK_EXIT_CONFIG_TEST_SECURITY

_POS_PREFIX = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<msg>.*)$", re.S)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`decide` says of one configuration."""

    diagnostics: tuple[Diagnostic, ...]  # every stage's, sorted by position
    runnable: bool  # `lvsd run` starts / a reload is applied
    exit_code: int  # `lvsd check-config` (and `lvsd run -t`)
    strict: bool = False
    # for a blocking diagnostic without a position (keepalived's "Non-existent interface
    # specified in configuration"), the positioned error reported just before it (which
    # interface, where): an operator needs both lines
    context: tuple[tuple[Diagnostic, Diagnostic], ...] = ()

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics if d.severity is severity)

    @property
    def blocking(self) -> tuple[Diagnostic, ...]:
        """The diagnostics that stop the config (FATAL; with ``strict`` also ERROR)."""
        stop = {Severity.FATAL, Severity.ERROR} if self.strict else {Severity.FATAL}
        return tuple(d for d in self.diagnostics if d.severity in stop)

    def counts(self) -> dict[str, int]:
        """Diagnostics by severity name (every severity present, zeros included)."""
        c = Counter(d.severity.value for d in self.diagnostics)
        return {s.value: c.get(s.value, 0) for s in Severity}

    def explain(self) -> list[str]:
        """The blocking diagnostics as lines, each preceded by its context (see ``context``)."""
        ctx = dict(self.context)
        out: list[str] = []
        for d in self.blocking:
            c = ctx.get(d)
            if c is not None and str(c) not in out:
                out.append(str(c))
            out.append(str(d))
        return out

    def reason(self) -> str:
        """One line: why the config does not run ('' when it runs)."""
        if self.runnable:
            return ""
        b = self.blocking
        what = ("configuration error(s) (--strict)" if self.strict
                else "fatal configuration error(s)")
        if not b:
            return what
        first = str(b[0])
        c = dict(self.context).get(b[0])
        if c is not None:
            first += f" ({c})"
        return f"{len(b)} {what}: {first}" + (" (see log for the rest)" if len(b) > 1 else "")


def positioned(text: str, severity: Severity, kind: DiagKind = DiagKind.GENERAL) -> Diagnostic:
    """A diagnostic from a ``file:line: message`` string (the planner's and data planes'
    problem lines); a line without that prefix gets no position."""
    m = _POS_PREFIX.match(text)
    if m is None:
        return Diagnostic(None, severity, text, kind)
    return Diagnostic(Pos(m.group("file"), int(m.group("line"))), severity, m.group("msg"), kind)


def sort_diagnostics(diags: Iterable[Diagnostic], files: Sequence[str] = ()) -> list[Diagnostic]:
    """By position: files in the order read (``files``; others after, by name), then line;
    diagnostics without a position last. Stable: same position keeps the emitting order."""
    order = {f: i for i, f in enumerate(files)}
    n = len(order)

    def key(d: Diagnostic) -> tuple[int, int, str, int]:
        if d.pos is None or d.pos.line == 0:
            return (2, 0, "", 0)
        return (0 if d.pos.file in order else 1, order.get(d.pos.file, n), d.pos.file,
                d.pos.line)

    return sorted(diags, key=key)


def exit_code(diags: Iterable[Diagnostic]) -> int:
    """``keepalived -t``'s meaning (see the module docstring). An error keepalived only logs
    when it runs (kind LOG: a notify script it drops) does not make ``-t`` exit 5: nor here."""
    counted = [d for d in diags if d.severity is not Severity.WARNING
               and not (d.severity is Severity.ERROR and d.kind is DiagKind.LOG)]
    sev = {d.severity for d in counted}
    kinds = {d.kind for d in counted}
    if Severity.FATAL in sev:
        return EXIT_FATAL
    if DiagKind.SECURITY in kinds:
        return EXIT_SECURITY
    if Severity.ERROR in sev:
        return EXIT_ERRORS
    return EXIT_OK


def decide(config: Config, extra: Iterable[Diagnostic] = (), *, strict: bool = False) -> Verdict:
    """Merge ``config``'s diagnostics with ``extra`` (semantic and host checks) and decide."""
    seen: set[Diagnostic] = set()
    merged: list[Diagnostic] = []
    for d in (*config.diagnostics, *extra):
        if d not in seen:  # the same finding from two stages is reported once
            seen.add(d)
            merged.append(d)
    context: list[tuple[Diagnostic, Diagnostic]] = []
    last: Diagnostic | None = None
    for d in merged:  # emission order: what a stage said just before its conclusion
        if d.severity is Severity.FATAL and (d.pos is None or not d.pos.line):
            if last is not None:
                context.append((d, last))
        elif d.severity is not Severity.WARNING and d.pos is not None and d.pos.line:
            last = d
    diags = tuple(sort_diagnostics(merged, config.files))
    code = exit_code(diags)
    blocked = code == EXIT_FATAL or (
        strict and any(d.severity is Severity.ERROR for d in diags))
    return Verdict(diags, not blocked, code, strict, tuple(context))
