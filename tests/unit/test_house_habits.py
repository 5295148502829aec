"""The house habits of CONTRIBUTING.md hold in the code, and the prose docs name real code.

* every logger in ``src/lvsd`` is named for its module (``logging.getLogger(__name__)``), so an
  operator can filter by module and a moved module cannot keep a stale name;
* no broad exception is swallowed silently: no ``contextlib.suppress(Exception)``, and every
  ``except Exception`` / ``except BaseException`` / bare ``except`` either re-raises, uses the
  exception it caught (a log line, a result, a diagnostic) or calls a logger;
* ``docs/architecture.md`` (its module table and the two traces, hop by hop) and
  ``CONTRIBUTING.md`` name only code that exists: every inline ``dotted.name`` resolves to a
  module, class, function or method of lvsd, so a rename that forgets the docs fails here;
* the team notes of one machine (docs/TEAM.md) are gone and nothing links to them.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

import lvsd

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "lvsd"
BROAD = {"Exception", "BaseException"}
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_sources_are_found() -> None:
    assert len(sources()) > 50  # the checks below are not vacuous


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_loggers_are_named_for_their_module(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    wrong = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "getLogger" and node.args
             and not (isinstance(node.args[0], ast.Name) and node.args[0].id == "__name__")]
    assert not wrong, f"{path}: getLogger(...) not from __name__ at lines {wrong}"


def _names(expr: ast.expr | None) -> set[str]:
    if expr is None:
        return {"<bare>"}
    elts = expr.elts if isinstance(expr, ast.Tuple) else [expr]
    return {e.id if isinstance(e, ast.Name) else e.attr if isinstance(e, ast.Attribute) else ""
            for e in elts}


def _handles_visibly(handler: ast.ExceptHandler) -> bool:
    for node in ast.walk(ast.Module(body=handler.body, type_ignores=[])):
        if isinstance(node, ast.Raise):
            return True
        if handler.name and isinstance(node, ast.Name) and node.id == handler.name:
            return True
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS):
            return True
    return False


def silent_handlers(source: str, name: str = "<src>") -> list[int]:
    """Lines of broad handlers that swallow what they catch without a trace."""
    out = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute | ast.Name)
                        and (call.func.attr if isinstance(call.func, ast.Attribute)
                             else call.func.id) == "suppress"
                        and any(_names(a) & BROAD for a in call.args)):
                    out.append(node.lineno)
        if (isinstance(node, ast.ExceptHandler) and _names(node.type) & (BROAD | {"<bare>"})
                and not _handles_visibly(node)):
            out.append(node.lineno)
    return out


def test_the_silent_handler_finder_finds_them() -> None:
    bad = (
        "import contextlib\n"
        "with contextlib.suppress(Exception):\n    f()\n"
        "try:\n    f()\nexcept Exception:\n    pass\n"
        "try:\n    f()\nexcept (OSError, BaseException) as e:\n    g()\n"
        "try:\n    f()\nexcept:\n    pass\n")
    assert silent_handlers(bad) == [2, 6, 10, 14]
    good = (
        "import contextlib\n"
        "with contextlib.suppress(OSError):\n    f()\n"
        "try:\n    f()\nexcept Exception:\n    s.close()\n    raise\n"
        "try:\n    f()\nexcept Exception as exc:\n    r = str(exc)\n"
        "try:\n    f()\nexcept Exception:\n    log.debug('f failed')\n")
    assert silent_handlers(good) == []


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_broad_exception_is_swallowed_silently(path: Path) -> None:
    lines = silent_handlers(path.read_text(), str(path))
    assert not lines, f"{path}: a broad exception swallowed without a trace at lines {lines}"


# ---------------------------------------------------------------- the docs name real code

def lvsd_modules() -> dict[str, ModuleType]:
    mods = {"lvsd": lvsd}
    for info in pkgutil.walk_packages(lvsd.__path__, "lvsd."):
        if info.name == "lvsd.demo" or info.name.startswith("lvsd.lab"):
            continue  # the demo's modules are not what the docs trace (and import it lazily)
        mods[info.name] = importlib.import_module(info.name)
    return mods


MODULES = lvsd_modules()
FILE_ENDINGS = {"py", "toml", "md", "sh", "conf", "c", "h", "json", "yaml", "service", "data",
                "stats", "cfg", "txt"}
EXTERNAL = {"logging", "contextlib", "asyncio", "os", "socket"}
INLINE = re.compile(r"`([^`]+)`")
DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _getattr_path(obj: object, parts: list[str]) -> bool:
    for p in parts:
        if not hasattr(obj, p):
            return False
        obj = getattr(obj, p)
    return True


def resolves(dotted: str) -> bool:
    """``dotted`` is a module, or an attribute path from a module or from a class of lvsd."""
    parts = dotted.removeprefix("lvsd.").split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        for name, mod in MODULES.items():
            if (name == f"lvsd.{head}" or name.endswith(f".{head}")) and \
                    _getattr_path(mod, parts[i:]):
                return True
    for mod in MODULES.values():  # Class.method: a class defined anywhere in lvsd
        cls = mod.__dict__.get(parts[0])
        if isinstance(cls, type) and _getattr_path(cls, parts[1:]):
            return True
    return False


def defined_somewhere(name: str) -> bool:
    """A private name (``_plan_vs``) the traces use bare: some lvsd module or class has it."""
    for mod in MODULES.values():
        if name in mod.__dict__:
            return True
        if any(isinstance(v, type) and name in v.__dict__ for v in mod.__dict__.values()):
            return True
    return False


def code_names(text: str) -> set[str]:
    """The dotted names in inline code spans outside fenced blocks, and the bare private ones
    (``_name``); ``f(args)`` gives ``f``."""
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.S | re.M)
    out = set()
    for span in INLINE.findall(prose):
        name = " ".join(span.split()).split("(", 1)[0].strip()
        if re.fullmatch(r"_[a-z][a-z0-9_]*", name):
            out.add(name)
            continue
        if not DOTTED.fullmatch(name) or name.rsplit(".", 1)[1] in FILE_ENDINGS:
            continue
        if name.split(".", 1)[0] in EXTERNAL:
            continue
        out.add(name)
    return out


@pytest.mark.parametrize(("doc", "at_least"), [("docs/architecture.md", 60),
                                               ("CONTRIBUTING.md", 8)])
def test_docs_name_only_real_code(doc: str, at_least: int) -> None:
    names = code_names((REPO / doc).read_text())
    assert len(names) >= at_least, names  # the docs do trace code through dotted names
    missing = sorted(n for n in names
                     if not (defined_somewhere(n) if n.startswith("_") else resolves(n)))
    assert not missing, f"{doc} names code that does not exist: {missing}"


def test_the_resolver_tells_real_from_made_up() -> None:
    assert resolves("pool.service.PoolService.on_health")
    assert resolves("Scheduler._probe") and resolves("codec.peek_vrid")
    assert resolves("lvsd.vrrp.runner") and resolves("scriptrun.ScriptRunner.run")
    assert not resolves("PoolService.on_health_changed")
    assert not resolves("pool.service.Scheduler")
    assert not resolves("vrrp.codec.peek_vrids")
    assert defined_somewhere("_plan_vs") and not defined_somewhere("_plan_vss")
    assert code_names("a `Foo.bar(x, y)` b `pyproject.toml` `x` `logging.getLogger`\n"
                      "```\n`Hidden.name`\n```\n`_private(x)` `notify_master`\n"
                      "  ```sh\n  `Indented.fence`\n  ```\nafter `Next.one`") == {
        "Foo.bar", "_private", "Next.one"}


def test_team_notes_are_gone_and_contributing_is_linked() -> None:
    assert not (REPO / "docs" / "TEAM.md").exists()
    assert (REPO / "CONTRIBUTING.md").is_file()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert "TEAM.md" not in doc.read_text(), doc
    assert "CONTRIBUTING.md" in (REPO / "README.md").read_text()
