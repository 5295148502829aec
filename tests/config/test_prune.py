"""The scripts keepalived frees at start (insecure, not found, not executable, bad user) are gone
from the config lvsd runs: host check (hand-built HostFacts) -> ``without_scripts``."""

from __future__ import annotations

import stat

import pytest
from test_hostcheck import ETH0, LO, facts, good_script, missing_script

from lvsd.config.hostcheck import host_result
from lvsd.config.loader import loads
from lvsd.config.prune import without_scripts

pytestmark = pytest.mark.unit

CONF = """global_defs {
    enable_script_security
    script_user root
}
vrrp_script chk_bad {
    script "/opt/bad/chk.sh"
}
vrrp_script chk_ok {
    script "/opt/ok/chk.sh"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.100/24
    }
    track_script {
        chk_bad
        chk_ok
    }
    notify_master "/opt/ok/master.sh"
    notify_backup "/opt/missing/backup.sh"
}
virtual_server 192.0.2.100 80 {
    protocol TCP
    quorum_up "/opt/bad/up.sh"
    real_server 192.0.2.11 80 {
        MISC_CHECK {
            misc_path "/opt/bad/misc.sh"
        }
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 192.0.2.12 80 {
        MISC_CHECK {
            misc_path "/opt/ok/misc.sh"
        }
    }
}
"""

# /opt/bad is world-writable: with enable_script_security keepalived disables every script in it
BAD_DIR = stat.S_IFDIR | 0o777


def _facts():  # type: ignore[no-untyped-def]
    return facts(ETH0, LO, scripts=(
        good_script("/opt/bad/chk.sh", dir_mode=BAD_DIR),
        good_script("/opt/bad/up.sh", dir_mode=BAD_DIR),
        good_script("/opt/bad/misc.sh", dir_mode=BAD_DIR),
        good_script("/opt/ok/chk.sh"), good_script("/opt/ok/master.sh"),
        good_script("/opt/ok/misc.sh"), missing_script("/opt/missing/backup.sh")))


def test_insecure_and_missing_scripts_are_not_in_the_running_config() -> None:
    cfg = loads(CONF, name="k.conf")
    res = host_result(cfg, _facts(), mode="full")
    dropped = {cmd for _, cmd in res.dropped_scripts}
    assert dropped == {"/opt/bad/chk.sh", "/opt/bad/up.sh", "/opt/bad/misc.sh",
                       "/opt/missing/backup.sh"}, res.diagnostics
    run = without_scripts(cfg, res.dropped_scripts)
    assert [s.name for s in run.vrrp_scripts] == ["chk_ok"]
    inst = run.vrrp_instances[0]
    assert [r.name for r in inst.track_scripts] == ["chk_ok"]
    assert inst.notify_master is not None and inst.notify_backup is None
    vs = run.virtual_servers[0]
    assert vs.quorum_up is None
    rs1, rs2 = vs.real_servers
    assert [c.kind.value for c in rs1.checkers] == ["TCP_CHECK"]  # the MISC_CHECK is freed
    assert rs2.checkers[0].misc_path is not None
    # the loaded config is untouched (frozen model): only the running copy changes
    assert cfg.vrrp_scripts[0].name == "chk_bad"


def test_nothing_dropped_is_the_same_object() -> None:
    cfg = loads(CONF, name="k.conf")
    assert without_scripts(cfg, frozenset()) is cfg
