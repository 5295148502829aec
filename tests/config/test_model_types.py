"""The config model's contracts that other layers rely on: ``pos`` is not part of equality, the
secret values are listed once and honoured by every output, and the keyword readers are
type-checked (one table per subsystem, no ``type: ignore``)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest

import lvsd.config.model as model
from lvsd.config import keywords
from lvsd.config.dump import iter_json, to_json
from lvsd.config.grammar import Kind
from lvsd.config.loader import loads
from lvsd.config.model import Config, Diagnostic, Pos, Severity
from lvsd.config.secrets import (
    REDACTED,
    SECRET_FIELDS,
    SECRET_KEYS,
    SECRET_KEYWORDS,
    config_secrets,
)
from lvsd.status.model import redact

pytestmark = pytest.mark.unit

KEYWORDS_DIR = Path(keywords.__file__).parent

CONF = """\
global_defs {
 router_id r1
 vrrp_garp_master_delay 2
}
vrrp_script chk {
 script "/bin/true"
 weight -10
}
vrrp_instance VI_1 {
 state BACKUP
 interface eth0
 virtual_router_id 51
 priority 100
 unicast_peer {
  192.0.2.2
 }
 virtual_ipaddress {
  192.0.2.100/24 dev eth0
 }
 track_script {
  chk
 }
 notify_master "/bin/echo master"
 authentication {
  auth_type PASS
  auth_pass s3cretPW
 }
}
vrrp_sync_group G {
 group {
  VI_1
 }
}
SSL {
 password keyPassphrase9
 ca /etc/ca.pem
}
virtual_server 192.0.2.100 80 {
 protocol TCP
 lb_algo rr
 quorum_up "/bin/echo up"
 real_server 198.51.100.1 80 {
  notify_up "/bin/echo rs"
  HTTP_GET {
   url {
    path /health
   }
  }
  MISC_CHECK {
   misc_path "/bin/true"
  }
 }
}
"""


def _shifted(text: str) -> str:
    """The same config, every line two lines further down (comments and a blank line)."""
    return "# moved\n\n" + text


def _top_objects(cfg: Config) -> list[object]:
    return [cfg.global_defs, *cfg.vrrp_scripts, *cfg.vrrp_instances, *cfg.vrrp_sync_groups,
            *cfg.virtual_servers, *cfg.unsupported]


def test_moving_lines_leaves_every_model_object_equal() -> None:
    a, b = loads(CONF), loads(_shifted(CONF))
    assert not a.fatal and not b.fatal
    for x, y in zip(_top_objects(a), _top_objects(b), strict=True):
        assert x == y and hash(x) == hash(y)
    # the positions really differ (else the equality above would prove nothing)
    assert a.vrrp_instances[0].pos != b.vrrp_instances[0].pos
    assert a.virtual_servers[0].real_servers[0].checkers[0].pos.line + 2 == \
        b.virtual_servers[0].real_servers[0].checkers[0].pos.line
    assert a.vrrp_instances[0].interface_pos != b.vrrp_instances[0].interface_pos


def test_a_real_change_is_still_unequal() -> None:
    a = loads(CONF)
    b = loads(_shifted(CONF.replace("priority 100", "priority 101")))
    c = loads(_shifted(CONF.replace("path /health", "path /healthz")))
    assert a.vrrp_instances[0] != b.vrrp_instances[0]
    assert a.virtual_servers == b.virtual_servers
    assert a.virtual_servers[0] != c.virtual_servers[0]
    assert a.virtual_servers[0].real_servers[0].checkers[0] != \
        c.virtual_servers[0].real_servers[0].checkers[0]


def _model_classes() -> list[type]:
    return [c for _, c in inspect.getmembers(model, inspect.isclass)
            if dataclasses.is_dataclass(c) and c.__module__ == model.__name__]


def test_every_position_field_is_left_out_of_equality() -> None:
    checked = 0
    for cls in _model_classes():
        for f in dataclasses.fields(cls):
            if f.name == "pos" or f.name.endswith("_pos"):
                checked += 1
                want = cls is Diagnostic or cls is Pos  # a message's position is its identity
                assert f.compare is want, f"{cls.__name__}.{f.name}"
    assert checked >= 20


def test_a_diagnostic_keeps_its_position_in_equality() -> None:
    one = Diagnostic(Pos("f", 1), Severity.ERROR, "m")
    assert one != Diagnostic(Pos("f", 2), Severity.ERROR, "m")


# ---------------------------------------------------------------------------- secrets


def test_secret_list_names_real_fields_left_out_of_repr() -> None:
    assert SECRET_FIELDS and SECRET_KEYWORDS
    for cls, names in SECRET_FIELDS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for n in names:
            assert n in fields and not fields[n].repr, f"{cls.__name__}.{n}"
            assert n in SECRET_KEYS  # the status documents drop the key too


def test_every_secret_is_found_and_never_printed() -> None:
    cfg = loads(CONF)
    found = config_secrets(cfg)
    assert sorted(found) == ["keyPassphrase9", "s3cretPW"]
    # one value per (class, field) of the list: config_secrets misses none of them
    assert len(found) == sum(len(v) for v in SECRET_FIELDS.values())
    for text in (repr(cfg), json.dumps(to_json(cfg)), "".join(iter_json(cfg))):
        assert "s3cretPW" not in text and "keyPassphrase9" not in text
    doc = redact({"vrrp": {"auth_pass": "x", "password": "y", "other": "s3cretPW"}},
                 found)
    assert doc == {"vrrp": {"auth_pass": REDACTED, "password": REDACTED, "other": REDACTED}}


@pytest.mark.parametrize("keyword", sorted(SECRET_KEYWORDS))
def test_lexer_redacts_each_secret_keyword_in_quoted_lines(keyword: str) -> None:
    cfg = loads(f'global_defs {{\n {keyword} "hunter2value\n}}\n')
    msgs = [str(d) for d in cfg.diagnostics]
    assert any(f"{keyword} {REDACTED}" in m for m in msgs), msgs
    assert not any("hunter2value" in m for m in msgs)


# ---------------------------------------------------------------------------- keyword tables


def test_every_block_table_is_owned_by_one_subsystem_module() -> None:
    owners: dict[int, str] = {}
    for path in sorted(KEYWORDS_DIR.glob("*.py")):
        mod = __import__(f"lvsd.config.keywords.{path.stem}", fromlist=["x"]) \
            if path.stem != "__init__" else keywords
        for name, value in vars(mod).items():
            if name.isupper() and isinstance(value, dict) and name.endswith("TABLE"):
                owners.setdefault(id(value), mod.__name__)
    for block_name, tbl in keywords.TABLES.items():
        if block_name != "root":
            assert id(tbl) in owners or block_name in keywords.CHECKER_KINDS or \
                block_name == "url", block_name
        for kw, spec in tbl.items():
            if spec.kind is Kind.BLOCK:
                assert spec.table in keywords.TABLES, f"{block_name}.{kw} -> {spec.table}"


def test_the_readers_are_type_checked() -> None:
    """No ``type: ignore`` or ``cast`` in the keyword readers: mypy checks every model
    constructor call against the typed keyword sets."""
    for path in KEYWORDS_DIR.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"type:\s*ignore|\bcast\(", text), path.name
