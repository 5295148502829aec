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
