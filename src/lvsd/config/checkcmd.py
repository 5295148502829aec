"""``lvsd check-config -f FILE [--config-id ID] [--json]``: validate like ``keepalived -t``.

Exit codes follow ``keepalived -t``: 0 the configuration is valid, 4 the file is missing
or a fatal problem stopped loading, 5 any other error (something was ignored or
defaulted, as keepalived reports it). Warnings (lvsd-only notices such as unsupported
keywords) do not change the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from lvsd.config.model import Config, Severity

EXIT_OK = 0
EXIT_FATAL = 4
EXIT_ERRORS = 5


def exit_code(config: Config) -> int:
    if config.fatal:
        return EXIT_FATAL
    if not config.ok:
        return EXIT_ERRORS
    return EXIT_OK


def summary(config: Config) -> list[str]:
    vs = config.virtual_servers
    rs = [r for v in vs for r in v.real_servers]
    checkers = Counter(c.kind.value for r in rs for c in r.checkers)
    sev = Counter(d.severity for d in config.diagnostics)
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


def run(args: argparse.Namespace) -> int:
    from lvsd.config.loader import load

    config = load(args.file, config_id=args.config_id)
    code = exit_code(config)
    if args.json:
        from lvsd.config.dump import to_json

        json.dump(to_json(config), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        for d in config.diagnostics:
            print(str(d), file=sys.stderr)
        return code
    for d in config.diagnostics:
        prefix = "" if d.severity is Severity.ERROR else f"{d.severity.value.upper()}: "
        print(prefix + str(d), file=sys.stderr)
    for line in summary(config):
        print(line)
    print({EXIT_OK: "Configuration is valid",
           EXIT_ERRORS: "Configuration has errors (see above)",
           EXIT_FATAL: "Configuration could not be loaded"}[code])
    return code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="check a keepalived.conf (exit 0 valid, 4 missing/fatal, 5 errors)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("-f", "--file", default="/etc/keepalived/keepalived.conf",
                   help="configuration file (default: %(default)s)")
    p.add_argument("--config-id", "-i", default=None,
                   help="id for @ID conditional lines (default: first part of the host name)")
    p.add_argument("--json", action="store_true",
                   help="print the resolved model as JSON on stdout")
    p.set_defaults(func=run)
