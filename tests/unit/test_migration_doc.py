"""docs/migration.md tells the truth about the code, so it cannot drift again.

* The keyword table: every row is parsed and each keyword's claim (supported, lvsd extension,
  accepted with no effect, warned) compared with ``lvsd.config.keywords.TABLES`` and
  ``NO_EFFECT`` of docs/gen_keyword_table.py.
* ``NO_EFFECT`` itself: a keyword listed there must be accepted by the loader, and the model
  fields holding its value must not be read by any run-time module (the day one is, the test
  says to move the keyword back to "supported"). The other way round, every model field that
  no run-time module reads must be in ``NO_EFFECT`` or explained in ``INDIRECT`` below — a
  new keyword parsed into a field nothing reads cannot be called "supported" silently.
  "Read" is textual (``.field`` or ``"field"`` in a run-time module); a field whose name is
  also a common attribute could hide, which is why the list is checked both ways.
* The "Not implemented" row of the behaviour table and the command-line flag table.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

import lvsd.config.model as model
from lvsd.cli import build_parser
from lvsd.config.keywords import TABLES
from lvsd.daemon.command import IGNORED

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "migration.md"
SRC = REPO / "src" / "lvsd"

# modules that parse, check or print the configuration without acting on it: a field read only
# here has no effect on what lvsd does
NOT_RUNTIME = {
    "config/grammar.py", "config/lexer.py", "config/loader.py",
    "config/model.py", "config/dump.py", "config/seq.py", "config/checkcmd.py",
    "config/hostcheck.py", "config/hostfacts.py", "config/verdict.py", "config/prune.py",
    "preflight.py",
    "status/dumps.py", "demo.py",
}

# model fields no run-time module reads by name, and how their value reaches the run time anyway
INDIRECT = {
    "Checker.track_file_name": "names the track_file block in messages",
    "Checker.unsupported": "warnings only (lvsd.preflight)",
    "Config.unsupported": "warnings only (lvsd.preflight)",
    "RealServer.unsupported": "warnings only (lvsd.preflight)",
    "VirtualServer.unsupported": "warnings only (lvsd.preflight)",
    "VrrpInstance.unsupported": "warnings only (lvsd.preflight)",
    "Unsupported.keyword": "warnings only (lvsd.preflight)",
    "Unsupported.context": "warnings only (lvsd.preflight)",
    "Config.vrrp_track_files": "resolved by the loader into each FILE_CHECK's track_file",
    "Config.files": "the files read: diagnostics in file order (config/verdict.py)",
    "GlobalDefs.vrrp_version": "resolved by the loader into each vrrp_instance",
    "GlobalDefs.vrrp_garp_master_delay": "resolved by the loader into each vrrp_instance",
    "GlobalDefs.vrrp_garp_master_repeat": "resolved by the loader into each vrrp_instance",
    "GlobalDefs.vrrp_garp_master_refresh": "resolved by the loader into each vrrp_instance",
    "GlobalDefs.vrrp_garp_master_refresh_repeat": "resolved by the loader into each "
                                                  "vrrp_instance",
    "GlobalDefs.vrrp_garp_lower_prio_delay": "resolved by the loader into each vrrp_instance",
    "GlobalDefs.vrrp_garp_lower_prio_repeat": "resolved by the loader into each vrrp_instance",
    "GlobalDefs.vrrp_lower_prio_no_advert": "resolved by the loader into each vrrp_instance",
    "GlobalDefs.vrrp_higher_prio_send_advert": "resolved by the loader into each vrrp_instance",
    "HttpUrl.status_codes": "read through HttpUrl.status_ok()",
    "StatusCodeRange.low": "read through HttpUrl.status_ok()",
    "StatusCodeRange.high": "read through HttpUrl.status_ok()",
    "VrrpInstance.native_ipv6": "resolved by the loader into VrrpInstance.family",
    "VrrpInstance.interface_pos": "position of host-check messages",
}


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_keyword_table",
                                                  REPO / "docs" / "gen_keyword_table.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _gen()


def _runtime_sources() -> dict[str, str]:
    out = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC).as_posix()
        if rel not in NOT_RUNTIME and not rel.startswith(("lab/", "config/keywords/")):
            out[rel] = p.read_text()
    return out


RUNTIME = _runtime_sources()


def readers(name: str) -> list[str]:
    """Run-time modules that read a field or keyword called ``name``."""
    pat = re.compile(rf"\.{re.escape(name)}\b(?!\s*\()|[\"']{re.escape(name)}[\"']")
    return sorted(rel for rel, text in RUNTIME.items() if pat.search(text))


def _model_fields() -> dict[str, type]:
    out = {}
    for _, cls in inspect.getmembers(model, inspect.isclass):
        if dataclasses.is_dataclass(cls) and cls.__module__ == model.__name__:
            for f in dataclasses.fields(cls):
                out[f"{cls.__name__}.{f.name}"] = cls
    return out


def _table_text() -> str:
    text = DOC.read_text()
    return text[text.index(GEN.BEGIN):text.index(GEN.END)]


def _cells(cell: str) -> tuple[set[str], set[str]]:
    """(keywords, the ones marked "(lvsd extension)") of one table cell."""
    kws, ext = set(), set()
    for kw, mark in re.findall(r"`([^`]+)`( \(lvsd extension\))?", cell):
        kws.add(kw)
        if mark:
            ext.add(kw)
    return kws, ext


def parse_doc_table() -> dict[str, dict[str, set[str]]]:
    """block (TABLES key) -> {"supported", "extension", "no_effect", "warned"} from the doc."""
    rows = {}
    for line in _table_text().splitlines():
        if not line.startswith("| ") or line.startswith("| Block ") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, f"malformed row: {line[:80]}"
        name = cells[0].strip("`")
        block = ("root" if name == "top level"
                 else "SSL_GET" if name.startswith("SSL_GET ") else name)
        sup, ext = _cells(cells[1])
        rows[block] = {"supported": sup - ext, "extension": ext,
                       "no_effect": _cells(cells[2])[0], "warned": _cells(cells[3])[0]}
    return rows


def claimed(block: str) -> dict[str, set[str]]:
    """What TABLES and NO_EFFECT say of ``block``."""
    table = TABLES[block]
    key = "HTTP_GET" if block == "SSL_GET" else block
    return {
        "supported": {k for k, s in table.items() if s.supported and not s.extension
                      and (key, k) not in GEN.NO_EFFECT},
        "extension": {k for k, s in table.items() if s.extension},
        "no_effect": {k for k, s in table.items() if s.supported and (key, k) in GEN.NO_EFFECT},
        "warned": {k for k, s in table.items() if not s.supported},
    }


def test_every_row_of_the_keyword_table_matches_the_code() -> None:
    rows = parse_doc_table()
    assert set(rows) == set(TABLES), "blocks differ: run docs/gen_keyword_table.py"
    wrong = []
    for block in TABLES:
        doc, code = rows[block], claimed(block)
        for claim in ("supported", "extension", "no_effect", "warned"):
            for kw in sorted(doc[claim] - code[claim]):
                actual = next((c for c in code if kw in code[c]), "not a keyword here")
                wrong.append(f"{block} {kw}: the doc says {claim}, the code: {actual}")
            for kw in sorted(code[claim] - doc[claim]):
                wrong.append(f"{block} {kw}: {claim} in the code, not in the doc")
    assert not wrong, ("docs/migration.md is not true to the code (run "
                       ".venv/bin/python docs/gen_keyword_table.py):\n" + "\n".join(wrong))


def test_the_doc_is_what_the_generator_writes() -> None:
    assert GEN.render() in DOC.read_text(), "run .venv/bin/python docs/gen_keyword_table.py"


def test_no_effect_keywords_are_accepted_and_unread() -> None:
    fields = _model_fields()
    problems = []
    for (block, kw), (refs, _why) in GEN.NO_EFFECT.items():
        spec = TABLES[block].get(kw)
        if spec is None or not spec.supported:
            problems.append(f"{block} {kw}: not accepted by the loader (it is warned about or "
                            "unknown): remove it from NO_EFFECT")
            continue
        for ref in refs or (kw,):
            if refs:
                assert ref in fields, f"NO_EFFECT names {ref}, which is not a model field"
            name = ref.split(".")[-1]
            if readers(name):
                problems.append(f"{block} {kw}: {name} is now read by {readers(name)}: if it "
                                "is implemented, remove it from NO_EFFECT and regenerate")
    for (block, kw, opt), (refs, _why) in GEN.NO_EFFECT_OPTIONS.items():
        assert TABLES[block][kw].supported
        for ref in refs:
            assert ref in fields, f"NO_EFFECT_OPTIONS names {ref}, not a model field"
            if readers(ref.split(".")[-1]):
                problems.append(f"{block} {kw} {opt}: {ref} is now read by "
                                f"{readers(ref.split('.')[-1])}")
    assert not problems, "\n".join(problems)


def test_every_unread_model_field_is_documented_or_explained() -> None:
    fields = _model_fields()
    documented = {r for refs, _ in GEN.NO_EFFECT.values() for r in refs}
    documented |= {r for refs, _ in GEN.NO_EFFECT_OPTIONS.values() for r in refs}
    documented |= {f"LvsSyncDaemon.{f.name}" for f in dataclasses.fields(model.LvsSyncDaemon)}
    unread = {name for name in fields if not readers(name.split(".")[1])}
    missing = sorted(unread - documented - set(INDIRECT))
    assert not missing, (
        "model fields no run-time module reads, so their keywords have no effect: add them to "
        "NO_EFFECT in docs/gen_keyword_table.py (and regenerate) or, if their value reaches "
        f"the run time another way, to INDIRECT in this test: {missing}")
    stale = sorted(k for k in INDIRECT if k not in fields or k not in unread)
    assert not stale, f"INDIRECT entries that are read by name now or gone: {stale}"


def _row(title: str) -> str:
    for line in DOC.read_text().splitlines():
        if line.startswith(f"| {title} |"):
            return line
    raise AssertionError(f"no row '{title}' in docs/migration.md")


def test_not_implemented_row_names_only_what_is_not_implemented() -> None:
    row = _row("Not implemented")
    named = set(re.findall(r"`([^`]+)`", row))
    checked = 0
    for kw in sorted(named):
        places = [(b, t[kw]) for b, t in TABLES.items() if kw in t]
        if not places:
            continue
        checked += 1
        for block, spec in places:
            key = "HTTP_GET" if block == "SSL_GET" else block
            assert not spec.supported or (key, kw) in GEN.NO_EFFECT, (
                f"the 'Not implemented' row names `{kw}`, which {block} implements")
    assert checked >= 5, row


def test_flag_table_matches_the_parser() -> None:
    text = DOC.read_text()
    section = text[text.index("| keepalived flag | lvsd run |"):]
    section = section[:section.index("\n\n")]
    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    ignored_flags = {flag for flag, _ in IGNORED.values()}
    seen = 0
    for line in section.splitlines()[2:]:
        first, rest = line.strip("|").split(" | ", 1)
        for flag in re.findall(r"`(-[^`]+)`", first):
            for form in flag.split("/"):
                opt = re.split(r"[=\[ ]", form)[0]
                assert opt in run._option_string_actions, f"lvsd run has no {opt}"
                seen += 1
                if "one warning each" in rest and opt.startswith("--"):
                    assert opt in ignored_flags, f"{opt} is said to warn but does not"
    assert seen >= 40, seen
