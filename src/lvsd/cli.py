"""``lvsd`` command line: one sub-command per module, each registering its own arguments.

Sub-commands live next to what they drive (``config/checkcmd.py``, ``daemon.py``,
``status/client.py``, ``demo.py``); each exposes ``register(subparsers)`` which adds its parser
and sets ``func`` (``Callable[[argparse.Namespace], int]``) as the default.

The demo is a feature of the shipped command, but its module (and the namespace lab it builds
on) is imported only when ``lvsd demo`` is what runs: for every other command line, ``lvsd
--help`` included, the parser gets a placeholder with the same name and help line. Likewise a
command line naming one sub-command imports only that one's module (``lvsd check-config`` never
imports the daemon, asyncio or the HTTP client; ``config/checkcmd`` is light and always there);
the others get placeholders. Without a sub-command (``lvsd --help``) every module but the
demo's is imported. ``--version`` reads the package metadata only when asked.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

# modules imported for every command line (light; what `lvsd check-config` runs) and the
# sub-commands they register
SUBCOMMAND_MODULES = ("lvsd.config.checkcmd",)
EAGER_SUBCOMMANDS = frozenset({"check-config"})

# sub-command -> (module, one-line help): a command line naming another sub-command does not
# import the module and gets a placeholder with this help line (the module's own:
# tests/unit/test_cli_lazy.py); "demo" is imported only when it is the sub-command
LAZY_SUBCOMMANDS = {
    "run": ("lvsd.daemon", "run the director (VRRP + health checks + pool)"),
    "status": ("lvsd.status.client", "show a running lvsd's state"),
    "reload": ("lvsd.status.client", "reload a running lvsd's config (SIGHUP)"),
    "demo": ("lvsd.demo", "failover and server failure live, in network namespaces (root)"),
}


def version_string() -> str:
    """``lvsd VERSION`` (``lvsd --version``, ``lvsd run --version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lvsd {version('lvsd')}"
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "lvsd 0+unknown"


class _LazyVersion(argparse._VersionAction):
    """``--version`` that reads the package metadata (importlib.metadata) only when used."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        self.version = version_string()
        super().__call__(parser, namespace, values, option_string)


def _command_word(argv: Sequence[str]) -> str | None:
    """The sub-command named on ``argv`` (the top level has only flags without values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> None:
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:  # a part not built yet must not break the others
        if exc.name is not None and exc.name.startswith("lvsd"):
            return
        raise
    mod.register(sub)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``lvsd`` parser for ``argv`` (default ``sys.argv[1:]``): a lazy sub-command's module
    is imported only when ``argv`` names it, or (not the demo's) when ``argv`` names none."""
    command = _command_word(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="lvsd", description="lvsd: a director for Linux Virtual Server clusters (VRRP, "
                                 "health checks, an IPVS pool that is always right).")
    parser.add_argument("-v", "--version", action=_LazyVersion, version="lvsd")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in LAZY_SUBCOMMANDS:
        wanted = {LAZY_SUBCOMMANDS[command][0]}
    elif command in EAGER_SUBCOMMANDS:
        wanted = set()
    else:  # no sub-command (or an unknown word): every module but the demo's
        wanted = {name for name, _ in LAZY_SUBCOMMANDS.values()} - {"lvsd.demo"}
    for name in SUBCOMMAND_MODULES:
        _register(sub, name)
    registered: set[str] = set()
    for word, (name, help_line) in LAZY_SUBCOMMANDS.items():
        if name in registered:
            continue  # the module registered this sub-command with another one
        if name in wanted:
            _register(sub, name)
            registered.add(name)
        else:
            sub.add_parser(word, help=help_line)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `lvsd status | head`: the reader left; say nothing more (and no traceback at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
