"""The one script runner's rules as pure functions (lvsd.scriptrun): keepalived's word
splitting, the user/group table, the timeout and kill policy, the exec-time security check."""

from __future__ import annotations

import os
import signal
import stat
from dataclasses import dataclass

import pytest

from lvsd.scriptrun import ScriptRunner, ScriptSpec, prepare
from lvsd.scriptrun.identity import (
    DEFAULT_SCRIPT_USER,
    Identity,
    IdentityError,
    exec_credentials,
    script_identity,
)
from lvsd.scriptrun.security import path_problem
from lvsd.scriptrun.termination import KILL_GRACE, REKILL_INTERVAL, STOP_GRACE, Phase, Termination
from lvsd.scriptrun.words import ScriptParseError, cmd_str, file_test_path, split_words

pytestmark = pytest.mark.unit

# ------------------------------------------------------------------ words (lib/parser.c)


@pytest.mark.parametrize("src,words", [
    ("/bin/true", ["/bin/true"]),
    ("  /bin/x  a\tb  ", ["/bin/x", "a", "b"]),
    # shell syntax is plain text: no shell ever sees it
    ("/usr/bin/touch /x/marker;id", ["/usr/bin/touch", "/x/marker;id"]),
    ("/bin/echo $(id -u) `id` a|b >c &", ["/bin/echo", "$(id", "-u)", "`id`", "a|b", ">c", "&"]),
    ("/bin/x *.conf ~ {a,b}", ["/bin/x", "*.conf", "~", "{a,b}"]),
    # quotes group and may join parts of one word; the other quote is text inside
    ("/bin/x 'a b' \"c d\"", ["/bin/x", "a b", "c d"]),
    ("/bin/x a'b c'd", ["/bin/x", "ab cd"]),
    ("/bin/x \"it's\" 'say \"hi\"'", ["/bin/x", "it's", 'say "hi"']),
    ("/bin/x '' \"\"", ["/bin/x", "", ""]),
    # backslash escapes, inside single quotes too (unlike a POSIX shell)
    (r"/bin/x a\ b", ["/bin/x", "a b"]),
    (r"/bin/x 'a\tb'", ["/bin/x", "a\tb"]),
    (r'/bin/x "a\"b"', ["/bin/x", 'a"b']),
    (r"/bin/x \n\r\a\b\f\v\E", ["/bin/x", "\n\r\a\b\f\v\x1b"]),
    (r"/bin/x \x41\x4a\x4B", ["/bin/x", "AJK"]),
    (r"/bin/x \x414", ["/bin/x", "\x14"]),  # as many hex digits as follow, in a char
    (r"/bin/x \xg", ["/bin/x", "xg"]),
    (r"/bin/x \101\0\7", ["/bin/x", "A\x00\x07"]),
    (r"/bin/x \cA\c[", ["/bin/x", "\x01\x1b"]),
    (r"/bin/x \\ \q", ["/bin/x", "\\", "q"]),
])
def test_split_words_as_keepalived(src: str, words: list[str]) -> None:
    assert split_words(src) == words


@pytest.mark.parametrize("src,message", [
    ("/bin/x 'open", "String '/bin/x 'open': missing terminating '"),
    ('/bin/x "open', "String '/bin/x \"open': missing terminating \""),
    ("/bin/x a\\", "Missing escape char at end: '/bin/x a\\'"),
    ("   ", "Unable to parse script '   ' - ignoring"),
])
def test_split_words_errors(src: str, message: str) -> None:
    with pytest.raises(ScriptParseError) as ei:
        split_words(src)
    assert str(ei.value) == message


def test_cmd_str_and_file_test() -> None:
    assert cmd_str(["/bin/x", "a b", "c"]) == "'/bin/x' 'a b' 'c'"
    assert cmd_str(["</dev/tcp/x", "y"]) == "</dev/tcp/x 'y'"
    assert file_test_path(["</etc/passwd"]) == "/etc/passwd"
    assert file_test_path(["< \t/etc/passwd"]) == "/etc/passwd"
    assert file_test_path(["<", "/etc/passwd"]) is None  # two words: not keepalived's test
    assert file_test_path(["<etc"]) is None
    assert file_test_path(["/bin/x"]) is None


def test_prepare_execs_words_and_appends_extra_never_a_shell() -> None:
    argv, ft = prepare("/bin/n.sh 'own arg';id", ("INSTANCE", "VI_1", "MASTER", "100"))
    assert (argv, ft) == (["/bin/n.sh", "own arg;id", "INSTANCE", "VI_1", "MASTER", "100"],
                          False)
    # the file test goes to sh with the path as an argument, never as shell text
    argv, ft = prepare("'</tmp/a;id' /bin/cat")
    assert ft and argv[:2] == ["/bin/sh", "-c"] and argv[3:] == ["sh", "/tmp/a;id", "/bin/cat"]
    assert "/tmp" not in argv[2]


# ------------------------------------------------------------------ identity (lib/notify.c)


@dataclass
class FakeAccounts:
    users: dict[str, tuple[int, int]]
    groups: dict[str, int]

    def user(self, name: str) -> tuple[int, int] | None:
        return self.users.get(name)

    def group(self, name: str) -> int | None:
        return self.groups.get(name)


ACC = FakeAccounts({"alice": (1000, 1000), "svc": (900, 901), DEFAULT_SCRIPT_USER: (800, 801)},
                   {"staff": 50, "ops": 60})
NO_KS = FakeAccounts({k: v for k, v in ACC.users.items() if k != DEFAULT_SCRIPT_USER},
                     ACC.groups)
ROOT = Identity(0, 0)


@pytest.mark.parametrize("user,group,script_user,script_group,accounts,expect", [
    # the script's own user: its primary group, NOT the global script_group
    ("alice", None, "svc", "ops", ACC, Identity(1000, 1000)),
    ("alice", "staff", "svc", "ops", ACC, Identity(1000, 50)),
    # nothing of its own: script_user [script_group]
    (None, None, "svc", "ops", ACC, Identity(900, 60)),
    (None, None, "svc", None, ACC, Identity(900, 901)),
    # no script_user: keepalived_script if it exists, else the daemon's own
    (None, None, None, None, ACC, Identity(800, 801)),
    (None, None, None, "ops", ACC, Identity(800, 801)),
    (None, None, None, None, NO_KS, ROOT),
])
def test_identity_table(user: str | None, group: str | None, script_user: str | None,
                        script_group: str | None, accounts: FakeAccounts,
                        expect: Identity) -> None:
    assert script_identity(user, group, script_user=script_user, script_group=script_group,
                           accounts=accounts, our=ROOT) == expect


@pytest.mark.parametrize("user,group,script_user,script_group,security,message", [
    ("bob", None, None, None, False, "Script user 'bob' does not exist"),
    ("alice", "wheel", None, None, False, "Script group 'wheel' does not exist"),
    (None, None, "bob", None, False, "Script user 'bob' does not exist"),
    (None, None, "svc", "wheel", False, "Script group 'wheel' does not exist"),
    (None, None, None, None, True, "Unable to set default user keepalived_script for script"),
])
def test_identity_errors_never_fall_back_to_root(user: str | None, group: str | None,
                                                 script_user: str | None,
                                                 script_group: str | None, security: bool,
                                                 message: str) -> None:
    with pytest.raises(IdentityError) as ei:
        script_identity(user, group, script_user=script_user, script_group=script_group,
                        accounts=NO_KS, our=ROOT, security=security)
    assert str(ei.value) == message


def test_exec_credentials_reset_supplementary_groups() -> None:
    # root: user, group and setgroups(1, &gid) (lib/notify.c set_script_env)
    assert exec_credentials(Identity(65534, 65534), ROOT) == {
        "user": 65534, "group": 65534, "extra_groups": [65534]}
    # not root: nothing to change
    assert exec_credentials(Identity(65534, 65534), Identity(1000, 1000)) == {}


async def test_runner_refuses_unknown_user_without_starting_anything() -> None:
    r = ScriptRunner(accounts=NO_KS)
    out = await r.run(ScriptSpec("/bin/true", user="bob"), timeout=1.0)
    assert not out.ran and out.pid is None and out.error == "Script user 'bob' does not exist"
    out = await r.run(ScriptSpec("/bin/x 'open"), timeout=1.0)
    assert out.error == "String '/bin/x 'open': missing terminating '"


# ------------------------------------------------------------------ the kill policy


def test_termination_timeline_term_then_kill_then_rekill() -> None:
    t = Termination(100.0, 5.0, name="/bin/s", pid=42)
    assert t.deadline == 105.0 and t.phase is Phase.RUNNING
    assert t.expire(104.9) is None  # not due
    s = t.expire(105.0)
    assert s is not None and s.signo == signal.SIGTERM and s.note is None
    assert t.phase is Phase.REQUESTING_TERMINATION and t.deadline == 105.0 + KILL_GRACE
    s = t.expire(107.0)
    assert s is not None and s.signo == signal.SIGKILL
    assert t.phase is Phase.FORCING_TERMINATION and t.deadline == 107.0 + KILL_GRACE
    s = t.expire(109.0)
    assert s is not None and s.signo == signal.SIGKILL
    assert s.note == "Script /bin/s child (PID 42) failed to terminate after kill"
    assert t.deadline == 109.0 + REKILL_INTERVAL
    assert t.sent == [signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]
    end = t.exited(-signal.SIGKILL)
    assert end.timed_out and not end.kill_group and t.deadline is None


def test_termination_no_timeout_never_signals() -> None:
    t = Termination(0.0, None)
    assert t.deadline is None and t.expire(1e9) is None
    assert t.exited(3).status == 3


@pytest.mark.parametrize("steps,returncode,status,sig,timed_out,kill_group", [
    (0, 0, 0, None, False, False),  # in time
    (0, 7, 7, None, False, False),
    (0, -signal.SIGTERM, None, signal.SIGTERM, False, False),  # not ours: "due to signal"
    (0, -signal.SIGSEGV, None, signal.SIGSEGV, False, False),
    # our SIGTERM killed it: timed out, and the rest of its group gets SIGKILL
    (1, -signal.SIGTERM, None, None, True, True),
    (1, -signal.SIGKILL, None, signal.SIGKILL, False, False),  # someone else's SIGKILL
    # it trapped our SIGTERM and exited: its exit status counts (WIFEXITED first)
    (1, 0, 0, None, False, False),
    (1, 3, 3, None, False, False),
    (2, -signal.SIGKILL, None, None, True, False),  # our SIGKILL
    (2, -signal.SIGTERM, None, None, True, False),  # our late SIGTERM
])
def test_termination_endings(steps: int, returncode: int, status: int | None, sig: int | None,
                             timed_out: bool, kill_group: bool) -> None:
    t = Termination(0.0, 1.0)
    now = 0.0
    for _ in range(steps):
        assert t.deadline is not None
        now = t.deadline
        assert t.expire(now) is not None
    end = t.exited(returncode)
    assert (end.status, end.signal, end.timed_out, end.kill_group) == (status, sig, timed_out,
                                                                        kill_group)
    assert t.phase is Phase.IDLE and t.expire(now + 100) is None


def test_termination_cancel_and_lost() -> None:
    t = Termination(0.0, 10.0)
    s = t.cancel(3.0)  # stop/reload: script_killall(SIGTERM), SIGKILL 1 s later
    assert s is not None and s.signo == signal.SIGTERM and t.deadline == 3.0 + STOP_GRACE
    s = t.expire(4.0)
    assert s is not None and s.signo == signal.SIGKILL
    t.lost()
    assert t.deadline is None and t.expire(1e9) is None and t.cancel(5.0) is None


# ------------------------------------------------------------------ exec-time security


def _st(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o755


@pytest.mark.parametrize("tree,problem", [
    ({}, None),
    ({"/opt": _st(stat.S_IFDIR | 0o777)}, "Unsafe permissions"),  # world-writable dir
    ({"/opt": _st(stat.S_IFDIR | 0o1777)}, None),  # ... with the sticky bit: fine (like /tmp)
    ({"/opt/s": _st(stat.S_IFREG | 0o775, gid=50)}, "Unsafe permissions"),  # group writable
    ({"/opt/s": _st(stat.S_IFREG | 0o775, gid=0)}, None),  # ... by root's group: fine
    ({"/opt/s": _st(FILE, uid=1000)}, "Unsafe permissions"),  # not owned by root
    ({"/opt/d": _st(DIR, uid=1000)}, "Unsafe permissions"),
    ({"/opt/d": _st(stat.S_IFLNK | 0o777)}, "Wrong file type"),  # a link inside the path
    ({"/opt/s": _st(stat.S_IFLNK | 0o777)}, None),  # the file itself may be a link
])
def test_path_problem(tree: dict[str, os.stat_result], problem: str | None) -> None:
    base = {"/": _st(DIR), "/opt": _st(DIR), "/opt/d": _st(DIR), "/opt/d/s": _st(FILE),
            "/opt/s": _st(FILE)}
    base.update(tree)
    for path in ("/opt/s",) if "/opt/d" not in tree else ("/opt/d/s",):
        got = path_problem(path, lstat=base.__getitem__)
        if problem is None:
            assert got is None
        else:
            assert got is not None and got.startswith(problem) and f"'{path}'" in got


def test_path_problem_missing_file() -> None:
    def lstat(p: str) -> os.stat_result:
        if p == "/opt/gone":
            raise FileNotFoundError(p)
        return _st(DIR)

    assert path_problem("/opt/gone", lstat=lstat) == (
        "check_script_secure could not find script '/opt/gone' - disabling")
