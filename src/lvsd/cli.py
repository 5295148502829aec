"""``lvsd`` command line: one sub-command per module, each registering its own arguments.

Sub-commands live next to what they drive (``config/checkcmd.py``, ``daemon.py``,
``status/client.py``, ``demo.py``); each exposes ``register(subparsers)`` which adds its parser
and sets ``func`` (``Callable[[argparse.Namespace], int]``) as the default.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# module path -> imported lazily so `lvsd check-config` never pays for aiohttp/pyroute2
SUBCOMMAND_MODULES = (
    "lvsd.config.checkcmd",
    "lvsd.daemon",
    "lvsd.status.client",
    "lvsd.demo",
)


def version_string() -> str:
    """``lvsd VERSION`` (``lvsd --version``, ``lvsd run --version``)."""
    try:
        from importlib.metadata import version

        return f"lvsd {version('lvsd')}"
    except Exception:  # pragma: no cover - not installed
        return "lvsd 0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvsd", description="lvsd: a director for Linux Virtual Server clusters (VRRP, "
                                 "health checks, an IPVS pool that is always right).")
    parser.add_argument("-v", "--version", action="version", version=version_string())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:  # a part not built yet must not break the others
            if exc.name is not None and exc.name.startswith("lvsd"):
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
