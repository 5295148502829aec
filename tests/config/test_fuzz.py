"""Property: whatever a corpus file is mutated into (tokens deleted/duplicated, braces and
quotes inserted, random bytes), the loader returns a Config plus diagnostics - never an
exception, never an "internal error" diagnostic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kaconf_corpus import corpus_files, require_corpus

from lvsd.config.dump import to_json
from lvsd.config.loader import load, loads
from lvsd.config.model import Config

pytestmark = pytest.mark.unit

FILES = corpus_files()
TEXTS = [p.read_bytes() for p in FILES] or [b"global_defs {\n router_id x\n}\n"]
_TOKEN = re.compile(rb"\S+|\s+")
SPECIALS = [b"{", b"}", b'"', b"'", b"#", b"!", b"\\", b"$X", b"${X}", b"$X=1", b"@a ", b"@^a ",
            b"include *.conf", b"\r", b"\x00", b"\xa0", b"\xff\xfe", b"\n", b"-", b"0", b"-1",
            b"99999999999999999999", b"::", b"fwmark", b"group", b"1.2.3.4-5"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    text = draw(st.sampled_from(TEXTS))
    toks = _TOKEN.findall(text)
    n = draw(st.integers(min_value=1, max_value=12))
    for _ in range(n):
        if not toks:
            toks = [b""]
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "bytes", "swap"]))
        i = draw(st.integers(min_value=0, max_value=len(toks) - 1))
        if op == "delete":
            del toks[i]
        elif op == "duplicate":
            toks.insert(i, toks[i])
        elif op == "insert":
            toks.insert(i, draw(st.sampled_from(SPECIALS)))
        elif op == "bytes":
            toks.insert(i, draw(st.binary(min_size=1, max_size=8)))
        else:
            j = draw(st.integers(min_value=0, max_value=len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
    return b"".join(toks)


def _check(cfg: Config) -> None:
    assert isinstance(cfg, Config)
    assert not any("internal error" in d.message for d in cfg.diagnostics), [
        str(d) for d in cfg.diagnostics]
    for d in cfg.diagnostics:
        str(d)
    to_json(cfg)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated(), cid=st.sampled_from(["a", "high", "low", ""]))
def test_mutated_corpus_never_raises(data: bytes, cid: str) -> None:
    _check(loads(data, config_id=cid))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    _check(loads(data))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_file_with_includes_never_raises(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "a.conf").write_bytes(data)
    (tmp_path / "main.conf").write_bytes(b"include a.conf\ninclude {a,b}.conf\n" + data[:200])
    _check(load(tmp_path / "main.conf"))


def test_corpus_available_for_fuzzing() -> None:
    require_corpus()
    assert len(TEXTS) == len(FILES) > 0
