"""Parity with the real ``keepalived -t`` (2.x installed here; CI installs it too).

* every ``Unknown keyword 'X'`` lvsd reports at a line, keepalived reports at that line
  (keepalived reports more: it cascades through a typo'd block, which lvsd skips);
* keepalived accepts the shipped example configs (only complaints about interfaces that
  do not exist on this machine are tolerated).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from kaconf_corpus import corpus_files

from lvsd.config.loader import load
from lvsd.config.model import Config, DiagKind

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
FILES = corpus_files()
EXAMPLES = sorted((REPO / "conf").glob("*/director*.conf"))
_UNKNOWN = re.compile(
    r"^\((?:(?P<file>[^:]+): )?Line (?P<line>\d+)\) Unknown keyword '(?P<kw>.*)'$")
_ENVIRONMENT = ("doesn't exist", "Non-existent interface", "Unable to set default user",
                "not found/accessible", "SECURITY VIOLATION")


def keepalived_t(path: Path, tmp_path: Path) -> tuple[int, list[str]]:
    if not Path(KEEPALIVED).exists():
        pytest.fail("keepalived is not installed (scripts/bootstrap.sh installs it)")
    proc = subprocess.run([KEEPALIVED, "-t", "-f", str(path)], capture_output=True, text=True,
                          errors="replace", timeout=60, cwd=tmp_path, check=False)
    return proc.returncode, proc.stderr.splitlines() + proc.stdout.splitlines()


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_unknown_keywords_match_keepalived(path: Path, tmp_path: Path) -> None:
    _, lines = keepalived_t(path, tmp_path)
    theirs = set()
    for ln in lines:
        m = _UNKNOWN.match(ln)
        if m:
            theirs.add((int(m.group("line")), m.group("kw")))
    cfg = load(path, config_id="lvsdtest")
    ours = set()
    nbsp_lines = {i for i, t in enumerate(path.read_bytes().splitlines(), 1) if b"\xc2\xa0" in t}
    for d in cfg.diagnostics:
        m = re.match(r"Unknown keyword '(.*)'", d.message)
        if m and d.pos is not None and d.pos.line not in nbsp_lines:
            ours.add((d.pos.line, m.group(1)))
    assert ours <= theirs, sorted(ours - theirs)


@pytest.mark.parametrize("path", EXAMPLES, ids=[f"{p.parent.name}/{p.name}" for p in EXAMPLES])
def test_keepalived_accepts_examples(path: Path, tmp_path: Path) -> None:
    code, lines = keepalived_t(path, tmp_path)
    complaints = [ln for ln in lines if ln.strip() and not any(e in ln for e in _ENVIRONMENT)]
    assert complaints == [], complaints
    if not any("doesn't exist" in ln for ln in lines):
        assert code == 0


# ------------------------------------------------------------ every positioned message, by kind

# keepalived messages that depend on the machine it runs on (interfaces, addresses, users,
# script files and their security, DNS for a named smtp_server, files an include names): the
# host-check layer reports those, not the keyword layer
_HOST = (*_ENVIRONMENT, "cannot track route", "tracked interface", "Invalid smtp server",
         "Config files missing", "cannot use a loopback interface")
# keepalived messages about the contents of blocks lvsd does not implement (reported as
# unsupported keywords): virtual_routes / virtual_rules / static_routes / static_rules
_UNIMPLEMENTED = ('for routes is deprecated', 'Rule has no preference specified',
                  'VRRP parsed invalid IP', 'Invalid rule to address')
_POSITIONED = re.compile(r"^\((?:(?P<file>[^:]+): )?Line (?P<line>\d+)\) (?P<msg>.*)$")
_SKIPPED = re.compile(r"lines (\d+)-(\d+)")
# known differences of the lexer layer (not the keyword layer), by file: line -> why
_LEXER = {
    # `auth_type PASS  #comment\`: keepalived keeps a backslash that ends a comment (it reads
    # "PASS\"); lvsd drops the whole comment
    "032.conf": {28: "backslash ending a comment"},
}


def keepalived_kind(msg: str) -> DiagKind:
    """The config_err_t keepalived reports ``msg`` with (lib/parser.c and the handlers)."""
    if msg.startswith("Unknown keyword "):
        return DiagKind.UNKNOWN_KEYWORD
    if msg.startswith("Unexpected '{'"):
        return DiagKind.UNEXPECTED_BOB
    if msg.startswith("Missing '{'"):
        return DiagKind.MISSING_BOB
    if msg.startswith("Extra '}'"):
        return DiagKind.UNEXPECTED_EOB
    if msg.startswith("There are ") and "missing '}'" in msg:
        return DiagKind.MISSING_EOB
    if msg.startswith(("Unmatched quote", "String '")):
        return DiagKind.UNMATCHED_QUOTE
    if "is missing a parameter" in msg:
        return DiagKind.MISSING_PARAMETER
    if re.match(r"^(WARNING - )?(invalid|negative) number '|^(WARNING - )?number '", msg):
        return DiagKind.INVALID_NUMBER
    if "A unicast keyword has been specified without any unicast peers" in msg:
        return DiagKind.DEPRECATED
    return DiagKind.GENERAL


def _exempt_lines(path: Path, cfg: Config) -> set[int]:
    """Lines where keepalived and lvsd knowingly read differently: non-breaking spaces (lvsd
    reads them as blanks) and the lines of a block lvsd skipped as unknown or read without its
    '{' (keepalived's processes cascade through them; lvsd says so in an LVSD warning)."""
    lines = {i for i, t in enumerate(path.read_bytes().splitlines(), 1) if b"\xc2\xa0" in t}
    for d in cfg.diagnostics:
        if d.kind is DiagKind.LVSD:
            for m in _SKIPPED.finditer(d.message):
                lines.update(range(int(m.group(1)), int(m.group(2)) + 1))
    return lines


def _explained(line: int, msg: str, exempt: set[int], cfg: Config, theirs: str) -> bool:
    """A keepalived message that follows from a difference named above."""
    if msg == "Unknown keyword '}'":
        # the '}' that ends keepalived's cascade: the process that read the block says "Extra
        # '}' found" there, the others "Unknown keyword '}'"
        return (bool(exempt) and line > min(exempt)) or any(
            d.pos is not None and d.pos.line == line and d.message == "Extra '}' found"
            for d in cfg.diagnostics)
    m = re.match(r"\((.*)\) track script (\S+) not found, ignoring\.\.\.$", msg)
    if m:  # keepalived removed the script for a host reason (its user does not exist here)
        return f"Unable to set default user for vrrp script {m.group(2)} - removing" in theirs
    return False


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_every_positioned_message_matches_keepalived(path: Path, tmp_path: Path) -> None:
    """Each message ``keepalived -t`` prints with a "(FILE: Line N)" position (other than host
    environment ones) is one lvsd diagnostic at that line: same text, same kind."""
    if not Path(KEEPALIVED).exists():
        pytest.fail("keepalived is not installed (scripts/bootstrap.sh installs it)")
    proc = subprocess.run([KEEPALIVED, "-t", "-i", "lvsdtest", "-f", str(path)],
                          capture_output=True, text=True, errors="replace", timeout=60,
                          cwd=tmp_path, check=False)
    cfg = load(path, config_id="lvsdtest")
    exempt = _exempt_lines(path, cfg)
    ours = {(d.pos.line, d.message, d.kind) for d in cfg.diagnostics if d.pos is not None}
    missing = []
    theirs = proc.stderr + proc.stdout
    for ln in theirs.splitlines():
        m = _POSITIONED.match(ln)
        if m is None or any(h in ln for h in _HOST + _UNIMPLEMENTED):
            continue
        line, msg = int(m.group("line")), m.group("msg")
        if line in exempt and keepalived_kind(msg) in (DiagKind.UNKNOWN_KEYWORD,
                                                       DiagKind.UNEXPECTED_BOB):
            continue
        if _explained(line, msg, exempt, cfg, theirs) or line in _LEXER.get(path.name, {}):
            continue
        if (line, msg, keepalived_kind(msg)) not in ours:
            missing.append((line, msg, keepalived_kind(msg).value))
    assert missing == [], sorted(set(missing))
