"""``lvsd`` command line: one sub-command per module, each registering its own arguments.

Sub-commands live next to what they drive (``config/checkcmd.py``, ``daemon.py``,
``status/client.py``, ``demo.py``); each exposes ``register(subparsers)`` which adds its parser
and sets ``func`` (``Callable[[argparse.Namespace], int]``) as the default.

The demo is a feature of the shipped command, but its module (and the namespace lab it builds
on) is imported only when ``lvsd demo`` is what runs: for every other command line, ``lvsd
--help`` included, the parser gets a placeholder with the same name and help line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# module path -> imported lazily so `lvsd check-config` never pays for aiohttp/pyroute2
SUBCOMMAND_MODULES = (
    "lvsd.config.checkcmd",
    "lvsd.daemon",
    "lvsd.status.client",
)

# sub-command -> (module, one-line help): the module is imported only when that sub-command runs
LAZY_SUBCOMMANDS = {
    "demo": ("lvsd.demo", "failover and server failure live, in network namespaces (root)"),
}


def version_string() -> str:
    """``lvsd VERSION`` (``lvsd --version``, ``lvsd run --version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lvsd {version('lvsd')}"
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "lvsd 0+unknown"


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
    is imported only when ``argv`` names it."""
    command = _command_word(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="lvsd", description="lvsd: a director for Linux Virtual Server clusters (VRRP, "
                                 "health checks, an IPVS pool that is always right).")
    parser.add_argument("-v", "--version", action="version", version=version_string())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        _register(sub, name)
    for word, (name, help_line) in LAZY_SUBCOMMANDS.items():
        if word == command:
            _register(sub, name)
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
