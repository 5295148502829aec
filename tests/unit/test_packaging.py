"""What the package ships and what a command line imports.

* no module under ``src/lvsd`` (the wheel's content) imports test code: pytest, hypothesis or the
  harness in ``tests/support`` (lab VRRP nodes, the VRRP-only runner harness, the IPVS VM
  runner), and the harness's old in-package homes are gone;
* every runtime dependency ``pyproject.toml`` declares is imported by some shipped module, and
  every third-party module a shipped module imports is declared;
* the demo is a feature of ``lvsd`` but only ``lvsd demo`` imports it: ``lvsd --help`` and the
  other sub-commands do not (``sys.modules`` of a fresh process that ran ``lvsd.cli`` as
  ``__main__``; ``-X importtime`` would miss ``importlib.import_module``), and the demo's
  placeholder in the parser says what the demo's own parser says.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lvsd.cli import build_parser

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "lvsd"
SUPPORT = REPO / "tests" / "support"

# top-level modules that are test code: test frameworks and the tests/ helper modules
TEST_ONLY = {"pytest", "_pytest", "hypothesis", "conftest",
             *(p.stem for p in SUPPORT.glob("*.py")),
             *(p.stem for p in (REPO / "tests").glob("*/*.py") if not p.stem.startswith("test_"))}


def imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (at any depth: lazy imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def shipped() -> dict[str, set[str]]:
    return {str(p.relative_to(SRC)): imports(p) for p in sorted(SRC.rglob("*.py"))}


def canonical(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def test_harness_lives_in_tests_support() -> None:
    for gone in ("vrrp/testlab.py", "vrrp/standalone.py", "lab/ipvsvm.py"):
        assert not (SRC / gone).exists(), gone
    for here in ("testlab.py", "vrrp_standalone.py", "ipvsvm.py"):
        assert (SUPPORT / here).is_file(), here
    assert {"testlab", "vrrp_standalone", "ipvsvm", "kahost", "kaconf_corpus"} <= TEST_ONLY


def test_no_shipped_module_imports_test_code() -> None:
    bad = sorted((f, m) for f, mods in shipped().items() for m in mods
                 if m.split(".")[0] in TEST_ONLY)
    assert bad == [], bad


def test_only_the_cli_reaches_the_demo() -> None:
    # lvsd.cli names it as a string (imported for `lvsd demo` only); nothing imports it directly
    bad = sorted(f for f, mods in shipped().items() if "lvsd.demo" in mods)
    assert bad == [], bad


def test_declared_runtime_dependencies_are_exactly_those_imported() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {canonical(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0])
                for d in project["dependencies"]}
    dists_of = importlib.metadata.packages_distributions()
    used: set[str] = set()
    undeclared: set[str] = set()
    for mods in shipped().values():
        for m in mods:
            top = m.split(".")[0]
            # _typeshed: the type checker's stub-only module, imported under TYPE_CHECKING
            if top in sys.stdlib_module_names or top in ("lvsd", "__future__", "_typeshed"):
                continue
            dists = {canonical(d) for d in dists_of.get(top, ())}
            assert dists, f"{top}: imported by lvsd but not installed"
            used |= dists
            if not dists & declared:
                undeclared.add(top)
    assert declared - used == set(), "declared runtime dependencies nothing imports"
    assert undeclared == set(), "imported by lvsd but not declared in pyproject.toml"


PROBE = """
import runpy, sys
sys.argv = ["lvsd", *sys.argv[1:]]
try:
    runpy.run_module("lvsd.cli", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    sys.stderr.write("\\nEXIT %s\\nMODULES %s\\n" % (exc.code, " ".join(sorted(sys.modules))))
"""


def imported_by(*argv: str) -> set[str]:
    """Every module a fresh ``lvsd ARGV`` process has imported when it exits."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          timeout=120, check=False)
    assert "\nEXIT 0\n" in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: lvsd"), proc.stdout
    return set(proc.stderr.rsplit("\nMODULES ", 1)[1].split())


@pytest.mark.parametrize("argv", [["--help"], ["check-config", "--help"], ["run", "--help"],
                                  ["status", "--help"], ["reload", "--help"]])
def test_other_commands_do_not_import_the_demo(argv: list[str]) -> None:
    mods = imported_by(*argv)
    assert "lvsd.config.checkcmd" in mods, sorted(mods)  # the probe sees lazy imports
    assert "lvsd.demo" not in mods
    assert "lvsd.lab.netns" not in mods  # the demo's namespace lab comes with it


def test_demo_command_imports_the_demo() -> None:
    assert "lvsd.demo" in imported_by("demo", "--help")


def _sub_help(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(a.dest, a.help) for a in sub._choices_actions]


def test_demo_placeholder_matches_the_demo() -> None:
    lazy = build_parser(["--help"])
    real = build_parser(["demo"])
    assert _sub_help(lazy) == _sub_help(real)
    assert real.parse_args(["demo", "--scenario", "steady"]).scenario == "steady"
    assert not hasattr(lazy.parse_args(["demo"]), "func")  # a placeholder, never run
