"""Hostile file input to the config loader: refused at once, with keepalived's words and the
include line's position, in bounded time and memory.

Every load here runs in a child process with an address-space limit (``RLIMIT_AS``) and a
timeout: a regression that reads ``/dev/zero`` dies on the memory limit, one that opens a FIFO
for reading blocks until the timeout -- either way the test fails instead of eating the machine.
The child reports its peak RSS (``VmHWM``), which the tests print and bound.

* devices, FIFOs, sockets, directories and executables as the main file and as includes;
* oversized files (a sparse file, a ``/proc`` file whose ``stat`` size is 0, the total);
* include bombs: self-inclusion, nesting, fan-out, brace expansion, a glob of thousands;
* lines split at ``\\n`` only: U+0085 / U+2028 / ``\\f`` / ``\\v`` / ``\\x1c`` in comments keep
  the line numbers keepalived -t reports;
* ``auth_pass`` / SSL ``password`` values never in any diagnostic or check-config output;
* ``check-config --json`` stays a small multiple of the config size.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LVSD = REPO / ".venv" / "bin" / "lvsd"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
MiB = 1 << 20
SMALL_AS = 256 * MiB  # address space for a child loading a small config (Python needs ~25 MiB)
HANG_GUARD = 60  # seconds; only a hang (a blocking open or read) comes anywhere near it

pytestmark = pytest.mark.unit

# The child: set the memory limit, optionally shrink lexer limits, load, report as JSON.
CHILD = r"""
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from lvsd.config import lexer
for kv in sys.argv[3:]:
    name, value = kv.split("=")
    setattr(lexer, name, int(value))
from lvsd.config.loader import load
cfg = load(sys.argv[2], config_id="lvsdtest")
print(json.dumps({
    "diags": [[str(d), d.severity.value, d.kind.value] for d in cfg.diagnostics],
    "files": list(cfg.files),
    "vs": len(cfg.virtual_servers),
    # VmHWM: this process's own peak (ru_maxrss also keeps the forking parent's peak across
    # exec, so a big pytest process would show through)
    "maxrss": next(int(ln.split()[1]) for ln in open("/proc/self/status")
                   if ln.startswith("VmHWM:")) * 1024,
}))
"""


def load_bounded(path: Path | str, *limits: str, mem: int = SMALL_AS) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(mem), str(path), *limits],
                          capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    print(f"{path}: peak RSS {out['maxrss'] / MiB:.1f} MiB")
    assert out["maxrss"] < mem
    return out


def _limit_as(mem: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    return apply


def cli_bounded(*argv: str, mem: int = SMALL_AS,
                stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    exe = [str(LVSD)] if LVSD.exists() else [sys.executable, "-m", "lvsd.cli"]
    proc = subprocess.run([*exe, "check-config", "--no-host", *argv], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=HANG_GUARD,
                          preexec_fn=_limit_as(mem), check=False)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def msgs(out: dict[str, Any]) -> list[str]:
    return [d[0] for d in out["diags"]]


def sev(out: dict[str, Any], needle: str) -> tuple[str, str]:
    (hit,) = [(d[1], d[2]) for d in out["diags"] if needle in d[0]]
    return hit


def not_regular(path: str) -> str:
    return f"Configuration file '{path}' is not a regular non-executable file - skipping"


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "fifo.conf"
    os.mkfifo(p)
    return p


@pytest.fixture()
def sock() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: a short directory of our own
    d = Path(tempfile.mkdtemp(prefix="lvsd-hostile-", dir="/tmp"))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(d / "s.conf"))
    try:
        yield d / "s.conf"
    finally:
        s.close()
        shutil.rmtree(d)


VS = ("virtual_server 192.0.2.10 80 {\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n"
      "  real_server 192.0.2.11 80 {\n  }\n}\n")


def include(tmp_path: Path, line: str, name: str = "main.conf") -> Path:
    """A main file with a valid block, the include on line 4, a valid block after it."""
    p = tmp_path / name
    p.write_text(f"global_defs {{\n  router_id a\n}}\n{line}\n" + VS)
    return p


# ------------------------------------------------------------------ main file not regular


def test_dev_zero_as_main_file() -> None:
    out = load_bounded("/dev/zero")
    assert out["diags"] == [[not_regular("/dev/zero"), "fatal", "file_not_found"]]
    assert out["files"] == []


def test_dev_zero_as_main_file_cli() -> None:
    proc = cli_bounded("-f", "/dev/zero")
    assert proc.returncode == 4
    assert f"FATAL: {not_regular('/dev/zero')}" in proc.stderr.splitlines()
    proc = cli_bounded("-f", "/dev/zero", "--json")
    assert proc.returncode == 4
    data = json.loads(proc.stdout)
    assert data["diagnostics"] == [{"pos": None, "severity": "fatal", "kind": "file_not_found",
                                    "message": not_regular("/dev/zero")}]


def test_fifo_as_main_file_returns_at_once(fifo: Path) -> None:
    # a blocking open() of a FIFO without a writer never returns: HANG_GUARD would fire
    out = load_bounded(fifo)
    assert out["diags"] == [[not_regular(str(fifo)), "fatal", "file_not_found"]]


def test_fifo_as_main_file_cli(fifo: Path) -> None:
    proc = cli_bounded("-f", str(fifo))
    assert proc.returncode == 4
    assert f"FATAL: {not_regular(str(fifo))}" in proc.stderr.splitlines()


def test_directory_as_main_file(tmp_path: Path) -> None:
    out = load_bounded(tmp_path)
    assert out["diags"] == [[f"Configuration file '{tmp_path}/' is a directory - skipping",
                             "fatal", "file_not_found"]]


def test_socket_as_main_file(sock: Path) -> None:
    out = load_bounded(sock)
    assert out["diags"] == [[not_regular(str(sock)), "fatal", "file_not_found"]]


def test_executable_main_file_is_refused_like_keepalived(tmp_path: Path) -> None:
    # keepalived's check_glob_file(): a config file with any x bit is not read
    p = include(tmp_path, "")
    p.chmod(0o755)
    out = load_bounded(p)
    assert out["diags"] == [[not_regular(str(p)), "fatal", "file_not_found"]]


def test_missing_main_file(tmp_path: Path) -> None:
    out = load_bounded(tmp_path / "nope.conf")
    assert out["diags"] == [[f"Configuration file '{tmp_path}/nope.conf' not found", "fatal",
                             "file_not_found"]]


# ------------------------------------------------------------------ includes not regular


def test_include_dev_zero_is_skipped_with_position(tmp_path: Path) -> None:
    main = include(tmp_path, "include /dev/zero")
    out = load_bounded(main)
    # keepalived logs it and runs without the file: an ERROR at the include line
    assert out["diags"] == [[f"({main}: Line 4) {not_regular('/dev/zero')}", "error", "general"]]
    assert out["vs"] == 1 and out["files"] == [str(main)]


def test_includer_dev_zero_is_fatal(tmp_path: Path) -> None:
    # includer: keepalived's file_config_error(INCLUDE_R) sets config_file_error -> no run
    main = include(tmp_path, "includer /dev/zero")
    out = load_bounded(main)
    assert out["diags"] == [[f"({main}: Line 4) {not_regular('/dev/zero')}", "fatal",
                             "file_not_found"]]


def test_include_dev_zero_cli(tmp_path: Path) -> None:
    main = include(tmp_path, "include /dev/zero")
    proc = cli_bounded("-f", str(main))
    assert proc.returncode == 5, proc.stderr
    assert f"({main}: Line 4) {not_regular('/dev/zero')}" in proc.stderr.splitlines()


def test_include_fifo_returns_at_once(tmp_path: Path, fifo: Path) -> None:
    main = include(tmp_path, f"include {fifo.name}")
    out = load_bounded(main)
    assert out["diags"] == [[f"({main}: Line 4) {not_regular(str(fifo))}", "error", "general"]]
    assert out["vs"] == 1


def test_include_fifo_cli(tmp_path: Path, fifo: Path) -> None:
    main = include(tmp_path, "includea *.conf")  # the glob matches main.conf (a loop) and fifo
    proc = cli_bounded("-f", str(main))
    assert proc.returncode == 4
    assert f"FATAL: ({main}: Line 4) {not_regular(str(fifo))}" in proc.stderr.splitlines()


def test_include_socket(tmp_path: Path, sock: Path) -> None:
    main = include(tmp_path, f"include {sock}")
    out = load_bounded(main)
    assert out["diags"] == [[f"({main}: Line 4) {not_regular(str(sock))}", "error", "general"]]


def test_include_directory(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "sub.conf").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("! nothing\n")
    main = include(tmp_path, "include conf.d/*.conf")
    out = load_bounded(main)
    # matched by a glob and skipped, as keepalived does; only a warning for a plain include
    assert out["diags"] == [[f"({main}: Line 4) Configuration file '{tmp_path}/conf.d/sub.conf/'"
                             " is a directory - skipping", "warning", "warning"]]
    assert out["files"] == [str(main), str(tmp_path / "conf.d" / "a.conf")]
    main = include(tmp_path, "includer conf.d/*.conf", "main2.conf")
    assert sev(load_bounded(main), "is a directory") == ("fatal", "file_not_found")


def test_include_executable(tmp_path: Path) -> None:
    x = tmp_path / "x.conf"
    x.write_text("global_defs {\n}\n")
    x.chmod(0o700)
    main = include(tmp_path, "include x.conf")
    out = load_bounded(main)
    assert out["diags"] == [[f"({main}: Line 4) {not_regular(str(x))}", "error", "general"]]


# ------------------------------------------------------------------ size limits


def test_oversized_main_file_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.conf"
    with big.open("wb") as fh:  # sparse: 64 MiB + 1 of NULs that take no disk
        fh.truncate(64 * MiB + 1)
    out = load_bounded(big, mem=128 * MiB)  # reading it (and decoding it) would not fit
    assert out["diags"] == [[f"Configuration file '{big}' is bigger than 64 MiB - not loading",
                             "fatal", "fatal"]]


def test_oversized_include_is_fatal_at_its_line(tmp_path: Path) -> None:
    big = tmp_path / "big.inc"
    with big.open("wb") as fh:
        fh.truncate(64 * MiB + 1)
    main = include(tmp_path, "include big.inc")
    out = load_bounded(main, mem=128 * MiB)
    # reading stops at once: the virtual_server after the include is not reported or built
    assert out["diags"] == [[f"({main}: Line 4) Configuration file '{big}' is bigger than "
                             "64 MiB - not loading", "fatal", "fatal"]]
    assert out["vs"] == 0


def test_file_growing_past_its_stat_size_is_read_bounded(tmp_path: Path) -> None:
    # /proc files are regular with st_size 0: only the bounded read loop can stop them
    main = include(tmp_path, "include /proc/self/maps")
    out = load_bounded(main, "MAX_FILE_BYTES=1024")  # main.conf fits, maps does not
    (d,) = out["diags"]
    assert d[0].startswith(f"({main}: Line 4) Configuration file '/proc/self/maps' is bigger "
                           "than") and d[1:] == ["fatal", "fatal"]


def test_total_size_limit(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"part{i}.inc").write_text(f"# part {i}\n" + "#" * 1200 + "\n")
    main = include(tmp_path, "include part*.inc")
    out = load_bounded(main, "MAX_TOTAL_BYTES=3000")  # main + 2 parts fit, the third does not
    assert out["files"] == [str(main), str(tmp_path / "part0.inc"), str(tmp_path / "part1.inc")]
    assert msgs(out) == [f"({main}: Line 4) Configuration file '{tmp_path}/part2.inc' would "
                         "make the configuration bigger than 0 MiB in all - not loading"]


# ------------------------------------------------------------------ include bombs


def test_self_include_is_a_loop_not_a_bomb(tmp_path: Path) -> None:
    main = include(tmp_path, "include main.conf")
    out = load_bounded(main)
    assert msgs(out) == [f"({main}: Line 4) include loop: {main} is already being read - "
                         "ignoring"]
    assert out["vs"] == 1


def test_include_nesting_limit(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"n{i}.inc").write_text(f"# level {i}\ninclude n{i + 1}.inc\n")
    main = include(tmp_path, "include n0.inc")
    out = load_bounded(main)
    assert out["diags"] == [[f"({tmp_path}/n31.inc: Line 2) include nesting deeper than 32 "
                             "files - not loading 'n32.inc'", "fatal", "fatal"]]
    assert len(out["files"]) == 33


def test_include_fan_out_limit(tmp_path: Path) -> None:
    # each level includes the next one 4 times: 4**8 = 65536 reads without a limit
    for i in range(8):
        nxt = f"f{i + 1}"
        (tmp_path / f"f{i}.inc").write_text(f"include {{{nxt},{nxt},{nxt},{nxt}}}.inc\n")
    (tmp_path / "f8.inc").write_text("# leaf\n")
    main = include(tmp_path, "include f0.inc")
    out = load_bounded(main)
    (d,) = out["diags"]
    assert re.fullmatch(r"\(.*f\d\.inc: Line 1\) more than 10000 configuration files read - "
                        r"not loading '.*f\d\.inc'", d[0]) and d[1] == "fatal", d


def test_brace_expansion_bomb(tmp_path: Path) -> None:
    main = include(tmp_path, "include x" + "{a,b}" * 40 + ".conf")  # 2**40 names
    out = load_bounded(main)
    (d,) = out["diags"]
    assert d[0].startswith(f"({main}: Line 4) include patterns name more than 100000 files - ")
    assert d[1] == "fatal"


def test_glob_of_thousands_each_including_the_glob(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for i in range(3000):
        (d / f"{i:04d}.conf").write_text("include *.conf\n")
    main = include(tmp_path, "include d/*.conf")
    out = load_bounded(main)
    # depth-first: 0000 includes 0001 (0000 is a loop), which includes 0002, ... until depth 32
    fatal = [m for m, s, _ in out["diags"] if s == "fatal"]
    assert fatal == [f"({d}/0031.conf: Line 1) include nesting deeper than 32 files - "
                     "not loading '*.conf'"]
    assert len(out["files"]) == 33


def test_glob_of_thousands_is_read_once_each(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for i in range(3000):
        (d / f"{i:04d}.conf").write_text(f"! file {i}\n")
    main = include(tmp_path, "include d/*.conf")
    out = load_bounded(main)
    assert out["diags"] == [] and len(out["files"]) == 3001


# ------------------------------------------------------------------ lines end at \n only

# bytes of comments that str.splitlines() would break: GBK (read as latin-1: 0x85 is U+0085),
# UTF-8 U+2028 / U+2029 / U+0085, form feed, vertical tab, \x1c-\x1e
_COMMENTS = [
    b"# \xd6\xd0\x85\xc4 GBK \x85 comment",
    "# line \u2028 separator \u2029 paragraph \u0085 nel".encode(),
    b"! form \x0c feed \x0b vt \x1c\x1d\x1e group seps",
]


def _unicode_conf(tmp_path: Path, comments: list[bytes]) -> Path:
    body = b"global_defs {\n" + b"".join(b"  router_id a " + c + b"\n" for c in comments)
    body += b"}\n" + b"\n".join(comments) + b"\nbogus_keyword 1\n"
    p = tmp_path / "u.conf"
    p.write_bytes(body)
    return p


@pytest.mark.parametrize("comment", _COMMENTS, ids=["gbk", "utf8-separators", "ascii-controls"])
def test_line_numbers_survive_line_separators_in_comments(tmp_path: Path, comment: bytes) -> None:
    p = _unicode_conf(tmp_path, [comment])
    out = load_bounded(p)
    unknown = [m for m in msgs(out) if "Unknown keyword" in m]
    assert unknown == [f"({p}: Line 5) Unknown keyword 'bogus_keyword'"]


def test_crlf_still_stripped(tmp_path: Path) -> None:
    p = tmp_path / "crlf.conf"
    p.write_bytes(b"global_defs {\r\n  router_id a\r\r\n}\r\nbogus 1\r\n")
    assert msgs(load_bounded(p)) == [f"({p}: Line 4) Unknown keyword 'bogus'"]


@pytest.mark.interop
def test_line_numbers_match_keepalived(tmp_path: Path) -> None:
    p = _unicode_conf(tmp_path, _COMMENTS)
    proc = subprocess.run([KEEPALIVED, "-t", "-f", str(p)], capture_output=True, text=True,
                          errors="replace", timeout=HANG_GUARD, cwd=tmp_path, check=False)
    theirs = {int(m.group(1)) for m in re.finditer(r"\(Line (\d+)\) Unknown keyword "
                                                   r"'bogus_keyword'", proc.stdout + proc.stderr)}
    assert theirs == {9}, proc.stdout + proc.stderr
    ours = [m for m in msgs(load_bounded(p)) if "Unknown keyword" in m]
    assert ours == [f"({p}: Line 9) Unknown keyword 'bogus_keyword'"]


# ------------------------------------------------------------------ secrets

MARK = "Zq7SecretMarker"
_SECRET_CONF = f"""$PW={MARK}
global_defs {{
  router_id a
}}
vrrp_instance V1 {{
  interface eth0
  virtual_router_id 1
  priority 100
  authentication {{
    auth_type PASS
    auth_pass "{MARK}
  }}
  virtual_ipaddress {{
    192.0.2.1
  }}
}}
vrrp_instance V2 {{
  interface eth0
  virtual_router_id 2
  authentication {{
    auth_type PASS
    auth_pass {MARK} and extra words {MARK}
    auth_pass "{MARK}"x"
  }}
  auth_pass {MARK}
  virtual_ipaddress {{
    192.0.2.2
  }}
}}
vrrp_instance V3 {{
  interface eth0
  virtual_router_id 3
  authentication {{
    auth_type AH
    auth_pass $PW junk
  }}
  virtual_ipaddress {{
    192.0.2.3
  }}
}}
@nothere auth_pass "{MARK}
SSL {{
  password "{MARK}
  password {MARK} {MARK}
}}
auth_pass{MARK}
"""


def test_secrets_in_no_diagnostic(tmp_path: Path) -> None:
    p = tmp_path / "s.conf"
    p.write_text(_SECRET_CONF)
    out = load_bounded(p)
    text = "\n".join(msgs(out))
    assert MARK not in text and MARK[:8] not in text, text
    assert "Unterminated quote 'auth_pass <redacted>'" in text  # the message is still there
    assert len(out["diags"]) >= 4


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_secrets_in_no_check_config_output(tmp_path: Path, json_out: bool) -> None:
    p = tmp_path / "s.conf"
    p.write_text(_SECRET_CONF)
    proc = cli_bounded("-f", str(p), *(["--json"] if json_out else []))
    assert proc.returncode in (4, 5)
    both = proc.stdout + proc.stderr
    assert MARK not in both and MARK[:8] not in both, both
    assert "Unterminated quote 'auth_pass <redacted>'" in proc.stderr
    if json_out:
        data = json.loads(proc.stdout)
        passes = {i["name"]: i.get("auth_pass") for i in data["vrrp_instances"]}
        assert passes["V1"] is None or passes["V1"] == "<redacted>"
        assert "<redacted>" in passes.values()
        assert data["global_defs"]["ssl"]["password"] == "<redacted>"


def test_short_secret_is_redacted_as_a_word_only(tmp_path: Path) -> None:
    p = tmp_path / "s.conf"
    p.write_text('vrrp_instance V {\n  authentication {\n    auth_pass "ab\n  }\n}\n'
                 "virtual_server 192.0.2.10 80 {\n  ab 1\n  lb_algo rab\n}\n")
    out = load_bounded(p)
    text = "\n".join(msgs(out))
    assert "'ab'" not in text and "Unknown keyword '<redacted>'" in text
    assert "rab" in text  # inside a word: left alone


# ------------------------------------------------------------------ --json size


def _big_conf(path: Path, n_vs: int, n_rs: int) -> None:
    with path.open("w") as fh:
        fh.write("global_defs {\n  router_id lb1\n}\n")
        for v in range(n_vs):
            fh.write(f"virtual_server 10.{v // 250}.{v % 250}.1 80 {{\n  delay_loop 6\n"
                     "  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n")
            for r in range(n_rs):
                fh.write(f"  real_server 172.16.{v % 250}.{r + 10} 80 {{\n    weight 1\n"
                         "    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n")
            fh.write("}\n")


def test_json_output_is_a_small_multiple_of_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "big.conf"
    _big_conf(conf, 2000, 10)
    out = tmp_path / "out.json"
    with out.open("w") as fh:
        proc = cli_bounded("-f", str(conf), "--json", mem=1024 * MiB, stdout=fh)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratio = out.stat().st_size / conf.stat().st_size
    print(f"config {conf.stat().st_size / MiB:.1f} MiB -> JSON {out.stat().st_size / MiB:.1f} "
          f"MiB ({ratio:.2f}x)")
    # indented and with every field it was ~20x; now ~3.5x with a short path, ~4.6x with
    # pytest's long tmp_path (two "file:line" positions per real server)
    assert ratio < 5
    with out.open() as fh:
        data = json.load(fh)
    rs = [r for v in data["virtual_servers"] for r in v["real_servers"]]
    assert len(rs) == 20000
    chk = rs[-1]["checkers"][0]
    assert chk["kind"] == "TCP_CHECK" and chk["connect_timeout"] == 3.0 and chk["retry"] == 1
    assert "misc_path" not in chk and "dns_name" not in chk  # unset / other kinds' settings


def test_physical_lines_split_at_newline_only_in_any_slice_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lvsd.config import lexer

    samples = ["", "\n", "a", "a\n", "a\n\n", "\nb", "a\r\nb\r\n", "x\x85y\u2028z\x0cw\n\nq",
               "long line " * 20 + "\nshort\n" + "tail without newline"]
    for size in (1, 2, 3, 7, 64, 1 << 20):
        monkeypatch.setattr(lexer, "_CHUNK", size)
        for text in samples:
            want = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
            got = [ln for chunk in lexer.physical_chunks(text) for ln in chunk]
            assert got == (want if text else []), (size, text)
