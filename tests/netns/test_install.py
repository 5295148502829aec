"""The documented install (``scripts/install.sh``, docs/operations.md "Installing"), run for
real into temporary directories: a wheel built from a copy of the tree, installed into a clean
virtualenv, the ``lvsd`` symlink, the docs and examples, the systemd unit.

* the installed ``lvsd`` is the wheel's, not the checkout's (it runs from ``/``, imports lvsd
  from the venv), says its version (``lvsd --version``) and checks a sample config;
* the installed unit is ``conf/lvsd.service`` with only the install's paths changed, so the
  shipped unit matches the default install (``/usr/local/bin/lvsd``, ``/opt/lvsd``,
  ``/etc/keepalived/keepalived.conf``, which is also ``lvsd run``'s default config path); its
  ``ExecStart`` arguments parse with the installed ``lvsd run``; it reloads with SIGHUP and
  raises the descriptor limit; ``systemd-analyze verify`` accepts it (it checks that every
  command exists: skipped only where systemd-analyze is not installed);
* ``--uninstall`` removes what the install put there and nothing else.

The install runs from a copy of exactly what ``docker/Dockerfile`` copies into the image, so
the image's install (the same script) is known to find what it needs. The install needs the
Python package index for the dependencies (as an operator's does).
Nothing goes into ``/opt``, ``/usr/local`` or ``/etc`` here: every path is under a temporary
directory removed at the end. A second test checks that bootstrap and the demo touch no host
service.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = {"bin": "/usr/local/bin", "prefix": "/opt/lvsd",
            "config": "/etc/keepalived/keepalived.conf"}


def _unit_lines(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in text.splitlines():
        if "=" in ln and not ln.startswith(("#", "[")):
            k, v = ln.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def _image_tree(dest: Path) -> Path:
    """A copy of what ``docker/Dockerfile`` COPYs (and its .dockerignore lets through) into the
    image before it runs install.sh: installing from it proves the image's install has every
    file it needs (the image itself is built only where a container engine exists)."""
    ignore = (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {ln[1:] for ln in ignore if ln.startswith("!")}
    for ln in (REPO / "docker" / "Dockerfile").read_text().splitlines():
        if not ln.startswith("COPY "):
            continue
        *sources, dst = ln.split()[1:]
        for src in sources:
            assert src in allowed, f"{src} is COPYed but Dockerfile.dockerignore drops it"
            target = dest / dst / Path(src).name if dst.endswith("/") else dest / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / src).is_dir():
                shutil.copytree(REPO / src, target,
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(REPO / src, target)
    return dest


@pytest.fixture(scope="module")
def installed() -> Iterator[dict[str, Path]]:
    root = Path(tempfile.mkdtemp(prefix="lt-install-"))
    paths = {"root": root, "prefix": root / "opt" / "lvsd", "bin": root / "usr" / "bin",
             "units": root / "etc" / "systemd" / "system",
             "config": root / "etc" / "keepalived" / "keepalived.conf"}
    try:
        tree = _image_tree(root / "src")
        p = subprocess.run(
            ["bash", str(tree / "scripts" / "install.sh"), "--prefix", str(paths["prefix"]),
             "--bin-dir", str(paths["bin"]), "--unit-dir", str(paths["units"]),
             "--config", str(paths["config"])],
            capture_output=True, text=True, timeout=600, check=False, cwd="/",
            env={k: v for k, v in {**os.environ, "TMPDIR": str(root)}.items()
                 if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "install: lvsd " in p.stdout, p.stdout
        yield paths
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.netns
def test_install_from_the_wheel_into_a_clean_venv(installed: dict[str, Path]) -> None:
    lvsd = installed["bin"] / "lvsd"
    assert lvsd.is_symlink() and lvsd.resolve() == (installed["prefix"] / "bin" / "lvsd").resolve()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    p = subprocess.run([str(lvsd), "--version"], capture_output=True, text=True, check=True,
                       cwd="/")
    assert p.stdout.strip() == f"lvsd {version}"
    # the venv's own lvsd: not the checkout (no editable install, no path to src/)
    p = subprocess.run([str(installed["prefix"] / "bin" / "python"), "-c",
                        "import lvsd, sys; print(lvsd.__file__); print(sys.path)"],
                       capture_output=True, text=True, check=True, cwd="/")
    assert p.stdout.splitlines()[0].startswith(str(installed["prefix"])), p.stdout
    assert str(REPO) not in p.stdout
    # a sample config checks clean, from the examples the install ships
    docs = installed["prefix"] / "share" / "doc" / "lvsd"
    for sample in (docs / "examples" / "nat" / "director1.conf",
                   docs / "examples" / "dr" / "director2.conf"):
        p = subprocess.run([str(lvsd), "check-config", "--no-host", "-f", str(sample)],
                           capture_output=True, text=True, check=False, cwd="/")
        assert p.returncode == 0, p.stdout + p.stderr
    # and a broken one does not
    bad = installed["root"] / "bad.conf"
    bad.write_text("vrrp_instance VI_1 {\n    virtual_router_id 300\n}\n")
    p = subprocess.run([str(lvsd), "check-config", "--no-host", "-f", str(bad)],
                       capture_output=True, text=True, check=False, cwd="/")
    assert p.returncode != 0, p.stdout + p.stderr
    tree = installed["root"] / "src"  # what was installed from
    for doc in ("operations.md", "migration.md"):
        assert (docs / doc).read_text() == (tree / "docs" / doc).read_text()


@pytest.mark.netns
def test_installed_unit_matches_the_install(installed: dict[str, Path]) -> None:
    unit = (installed["units"] / "lvsd.service").read_text()
    # the shipped unit is the default install's: only the install's paths differ
    back = (unit.replace(str(installed["bin"]), DEFAULTS["bin"])
            .replace(str(installed["prefix"]), DEFAULTS["prefix"])
            .replace(str(installed["config"]), DEFAULTS["config"]))
    assert back == (installed["root"] / "src" / "conf" / "lvsd.service").read_text()  # ours
    keys = _unit_lines(unit)
    start = shlex.split(keys["ExecStart"][0])
    assert start[0] == str(installed["bin"] / "lvsd")
    assert Path(start[0]).resolve() == (installed["prefix"] / "bin" / "lvsd").resolve()
    assert start[1] == "run" and start[start.index("-f") + 1] == str(installed["config"])
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["Type"] == ["notify"]
    assert int(keys["LimitNOFILE"][0]) >= 65536
    pid = start[start.index("--pid-file") + 1]
    assert keys["PIDFile"] == [pid]
    doc = keys["Documentation"][0]
    assert doc.startswith("file://") and Path(doc[len("file://"):]).is_file(), doc
    # the installed lvsd accepts ExecStart's arguments, and its defaults are the unit's paths
    args = [a for a in start[1:] if not a.startswith("$")]
    code = ("import sys; from lvsd.cli import build_parser; a = sys.argv[1:]; "
            "ns = build_parser(a).parse_args(a); d = build_parser(['run']).parse_args(['run']); "
            "print(ns.config_file, ns.pid_file, d.config_file, d.pid_file)")
    p = subprocess.run([str(installed["prefix"] / "bin" / "python"), "-c", code, *args],
                       capture_output=True, text=True, check=False, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(installed["config"]), pid, DEFAULTS["config"], pid]
    # systemd's own check (it also checks that each command exists and is executable)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit was not verified by systemd")
    p = subprocess.run(["systemd-analyze", "verify", str(installed["units"] / "lvsd.service")],
                       capture_output=True, text=True, check=False, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "lvsd.service" not in p.stderr, p.stderr  # no warning about our unit either


@pytest.mark.netns
def test_uninstall_removes_what_install_put_there(installed: dict[str, Path]) -> None:
    keep = installed["root"] / "etc" / "systemd" / "system" / "other.service"
    keep.write_text("[Service]\nExecStart=/bin/true\n")
    p = subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), "--uninstall",
                        "--prefix", str(installed["prefix"]), "--bin-dir", str(installed["bin"]),
                        "--unit-dir", str(installed["units"])],
                       capture_output=True, text=True, check=False, cwd="/", timeout=60)
    assert p.returncode == 0, p.stderr
    assert not installed["prefix"].exists()
    assert not (installed["bin"] / "lvsd").exists()
    assert not (installed["units"] / "lvsd.service").exists()
    assert keep.exists()


def test_bootstrap_and_demo_touch_no_host_service() -> None:
    """The scripts a new user runs first install packages and a venv, nothing else: no
    systemctl/service/invoke-rc.d (the old bootstrap disabled the host's keepalived)."""
    service_tools = re.compile(r"\b(systemctl|service|invoke-rc\.d|deb-systemd-invoke|"
                               r"update-rc\.d)\s+\S")
    for script in ("bootstrap.sh", "demo.sh", "test.sh"):
        code = [ln for ln in (REPO / "scripts" / script).read_text().splitlines()
                if not ln.lstrip().startswith("#")]
        hits = [ln for ln in code if service_tools.search(ln)]
        assert hits == [], (script, hits)
    # install.sh only reloads unit files (it starts, stops, enables nothing); the other
    # mentions are in the messages it prints (echo and its continuation lines)
    commands = [ln.split("#")[0].strip()
                for ln in (REPO / "scripts" / "install.sh").read_text().splitlines()
                if "systemctl" in ln and not ln.lstrip().startswith(("#", "echo", '"'))]
    assert commands == ["systemctl daemon-reload"]
