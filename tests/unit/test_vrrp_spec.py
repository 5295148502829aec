"""What a VRRP runner is built with from a parsed configuration (no I/O: runners are not
started): the users scripts run as. keepalived runs every script that names no user of its
own as the global ``script_user`` [``script_group``]: notify scripts of instances and of sync
groups, and ``vrrp_script`` checks alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvsd.config.loader import loads
from lvsd.scriptrun.identity import Identity, exec_credentials
from lvsd.vrrp.notify import ScriptSpec
from lvsd.vrrp.runner import InstanceSpec, notifier_from_config
from vrrp_standalone import runners_from_config

pytestmark = pytest.mark.unit

CONF = """global_defs {
    script_user nobody nogroup
}
vrrp_script chk_own {
    script "/bin/true"
    user daemon
}
vrrp_script chk_default {
    script "/bin/true"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    track_script {
        chk_own
        chk_default
    }
    notify_master "/bin/true master"
    virtual_ipaddress {
        192.0.2.100/24
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 52
    priority 100
    virtual_ipaddress {
        192.0.2.101/24
    }
}
vrrp_sync_group G1 {
    group {
        VI_1
        VI_2
    }
    notify_master "/bin/true group-master"
}
"""


def test_vrrp_script_without_user_runs_as_script_user() -> None:
    cfg = loads(CONF)
    assert not cfg.fatal, cfg.diagnostics
    inst = next(i for i in cfg.vrrp_instances if i.name == "VI_1")
    checks = {c.name: c.script for c in InstanceSpec.from_config(inst, cfg).scripts}
    assert checks["chk_own"] == ScriptSpec("/bin/true", "daemon", None)
    assert checks["chk_default"] == ScriptSpec("/bin/true", "nobody", "nogroup")


def test_instance_and_group_notifiers_default_to_script_user(tmp_path: Path) -> None:
    path = tmp_path / "k.conf"
    path.write_text(CONF)
    [runner] = runners_from_config(str(path), "raw")
    gn = runner.group_notifier
    assert gn is not None and gn.kind == "GROUP" and gn.name == "G1"
    assert set(gn.scripts) == {"MASTER"}
    assert (gn.default_user, gn.default_group) == ("nobody", "nogroup")
    inst = runner.specs[0].notifier
    assert inst is not None and inst.kind == "INSTANCE" and set(inst.scripts) == {"MASTER"}
    assert (inst.default_user, inst.default_group) == ("nobody", "nogroup")


def test_notifier_without_script_user_runs_as_daemon() -> None:
    cfg = loads(CONF.replace("    script_user nobody nogroup\n", ""))
    sg = cfg.vrrp_sync_groups[0]
    n = notifier_from_config("GROUP", sg, cfg)
    assert (n.default_user, n.default_group) == (None, None)


def test_run_as() -> None:
    # the user/group rule itself: tests/unit/test_scripts.py (lvsd.scriptrun.identity)
    root, nobody = Identity(0, 0), Identity(65534, 65534)
    assert exec_credentials(nobody, root) == {"user": 65534, "group": 65534,
                                              "extra_groups": [65534]}
    assert exec_credentials(nobody, Identity(1000, 1000)) == {}  # setuid needs root


def test_daemon_group_notifier_defaults_to_script_user() -> None:
    # `lvsd run` builds its runners through lvsd.daemon.vrrpset, not the standalone entry point
    from lvsd.daemon.vrrpset import make_runner, vrrp_groups

    cfg = loads(CONF)
    group, members = vrrp_groups(cfg)["group G1"]
    runner = make_runner(cfg, group, members, transport="raw", on_event=lambda *a: None)
    gn = runner.group_notifier
    assert gn is not None and set(gn.scripts) == {"MASTER"}
    assert (gn.default_user, gn.default_group) == ("nobody", "nogroup")
