"""``lvsd check-config -f FILE [--dataplane D] [-P|-C] [--strict] [--json]``: check like
``keepalived -t`` and predict ``lvsd run`` exactly (the same :func:`lvsd.preflight.preflight`).

Exit codes are ``keepalived -t``'s: 0 the configuration is valid, 4 it cannot run (the file is
missing, an interface does not exist, a fatal problem; ``lvsd run`` refuses it), 6 script
security errors, 5 other errors (something was skipped, defaulted or reset as keepalived does it,
and ``lvsd run`` runs it, unless ``--strict``). Warnings (lvsd-only notices such as unsupported
keywords) do not change the exit code. Diagnostics are printed in position order.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from lvsd.config.model import Config, Diagnostic, Severity
from lvsd.config.verdict import EXIT_ERRORS, EXIT_FATAL, EXIT_OK, EXIT_SECURITY
from lvsd.config.verdict import exit_code as verdict_exit_code

__all__ = ["EXIT_ERRORS", "EXIT_FATAL", "EXIT_OK", "EXIT_SECURITY", "check_file", "exit_code",
           "register", "run", "summary"]


def exit_code(config: Config) -> int:
    """The loader's diagnostics alone (no host or semantic checks): see :func:`check_file`."""
    return verdict_exit_code(config.diagnostics)


def summary(config: Config, diagnostics: Sequence[Diagnostic] | None = None) -> list[str]:
    vs = config.virtual_servers
    rs = [r for v in vs for r in v.real_servers]
    checkers = Counter(c.kind.value for r in rs for c in r.checkers)
    sev = Counter(d.severity for d in (config.diagnostics if diagnostics is None
                                       else diagnostics))
    lines = [
        f"Configuration {config.source} (config id '{config.config_id}'): "
        f"{len(config.files)} file(s)",
        f"  vrrp_instances: {len(config.vrrp_instances)}, sync groups: "
        f"{len(config.vrrp_sync_groups)}, vrrp_scripts: {len(config.vrrp_scripts)}",
        f"  virtual_servers: {len(vs)}, virtual_server_groups: "
        f"{len(config.virtual_server_groups)}, real_servers: {len(rs)}, checkers: "
        f"{sum(checkers.values())}"
        + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(checkers.items())) + ")"
           if checkers else ""),
    ]
    if config.unsupported:
        lines.append(f"  keywords not supported by lvsd (ignored): {len(config.unsupported)}")
        for u in config.unsupported:
            lines.append(f"    {u.pos}: {u.keyword} ({u.context})")
    lines.append(
        f"  {sev[Severity.FATAL]} fatal, {sev[Severity.ERROR]} error(s), "
        f"{sev[Severity.WARNING]} warning(s)"
    )
    return lines


def check_file(path: str, *, config_id: str | None = None, dataplane: str = "ipvs",
               mode: str = "full", strict: bool = False, json_out: bool = False,
               check_host: bool = True) -> int:
    """Load ``path``, run every check ``lvsd run`` runs (:func:`lvsd.preflight.preflight`),
    print the diagnostics in position order and a summary; return the exit code."""
    from lvsd.config.loader import load
    from lvsd.preflight import preflight

    config = load(path, config_id=config_id)
    verdict = preflight(config, mode=mode, dataplane=dataplane, strict=strict,
                        check_host_=check_host).verdict
    code = verdict.exit_code
    if json_out:
        from lvsd.config.dump import write_json

        write_json(config, sys.stdout)  # compact and streamed: see lvsd.config.dump
        for d in verdict.diagnostics:
            print(str(d), file=sys.stderr)
        return code
    for d in verdict.diagnostics:
        prefix = "" if d.severity is Severity.ERROR else f"{d.severity.value.upper()}: "
        print(prefix + str(d), file=sys.stderr)
    for line in summary(config, verdict.diagnostics):
        print(line)
    runs = "lvsd run would refuse it" if not verdict.runnable else "lvsd run would start"
    print({EXIT_OK: "Configuration is valid",
           EXIT_ERRORS: "Configuration has errors keepalived logs and runs through (see above)"
                        f": {runs}",
           EXIT_SECURITY: f"Configuration has script security errors (see above): {runs}",
           EXIT_FATAL: "Configuration cannot run (see above): lvsd run would refuse it"}[code])
    return code


def run(args: argparse.Namespace) -> int:
    mode = "vrrp-only" if args.vrrp_only else ("check-only" if args.check_only else "full")
    return check_file(args.file, config_id=args.config_id, dataplane=args.dataplane, mode=mode,
                      strict=args.strict, json_out=args.json, check_host=not args.no_host)


#: ``lvsd check-config --help``: plain text (the module docstring is for the code's readers)
DESCRIPTION = """\
Check a keepalived.conf as 'keepalived -t' does, and predict exactly what 'lvsd run' does with
it (the same pre-run check: semantics, the host's interfaces, addresses and scripts, what the
data plane can carry). Diagnostics are printed in position order."""
EPILOG = """\
exit codes (keepalived -t's):
  0  valid
  4  cannot run: the file is missing, an interface does not exist, a fatal problem
     ('lvsd run' refuses it)
  5  errors: something was skipped, defaulted or reset as keepalived does it
     ('lvsd run' runs it, unless --strict)
  6  script security errors
Warnings (lvsd-only notices such as unsupported keywords) do not change the exit code."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="check a keepalived.conf (exit 0 valid, 4 missing/fatal, 5 errors)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--file", default="/etc/keepalived/keepalived.conf",
                   help="configuration file (default: %(default)s)")
    p.add_argument("--config-id", "-i", default=None,
                   help="id for @ID conditional lines (default: first part of the host name)")
    p.add_argument("--json", action="store_true",
                   help="print the resolved model as JSON on stdout (default: the "
                        "diagnostics and a summary as text)")
    p.add_argument("--dataplane", choices=("ipvs", "nftables", "memory"), default="ipvs",
                   help="check what this data plane can carry, as `lvsd run --dataplane` "
                        "would (default ipvs)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-P", "--vrrp-only", "--vrrp", action="store_true",
                   help="check only what 'lvsd run --vrrp' runs (default: everything)")
    g.add_argument("-C", "--check-only", "--check", action="store_true",
                   help="check only what 'lvsd run --check' runs (default: everything)")
    p.add_argument("--strict", action="store_true",
                   help="say whether 'lvsd run --strict' (any error refuses) would start; the "
                        "exit code is the same (default: keepalived's policy)")
    p.add_argument("--no-host", action="store_true",
                   help="skip the host checks (interfaces, addresses, scripts): check a file "
                        "meant for another machine (default: check this host)")
    p.set_defaults(func=run)
