"""What ``lvsd run`` refuses at start and on reload before touching anything (``preflight``).

The nftables data plane object is real; its ``refuse`` is pure policy (no ``nft`` is run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lvsd.daemon import Daemon, Options

pytestmark = pytest.mark.unit

CONF = """virtual_server 192.0.2.10 80 {{
  protocol TCP
  lb_algo rr
  lb_kind NAT
  sorry_server 10.0.0.99 80
{extra}  real_server 10.0.0.1 80 {{
    weight 1
  }}
}}
"""


def _errors(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "lvsd.conf"
    path.write_text(CONF.format(extra=extra))
    d = Daemon(Options(config_file=str(path), dataplane="nftables", mode="check-only",
                       status_listen=None))
    cfg = d.load()
    assert cfg.ok, cfg.diagnostics
    verdict = d.preflight(cfg).verdict  # nftables refuse() is pure policy: no nft command runs
    return [f"{x.pos}: {x.message}" for x in verdict.blocking]


def test_sorry_server_the_data_plane_cannot_carry_is_refused_at_load(tmp_path: Path) -> None:
    # With every real server alive the sorry server is not in the table; it must be checked
    # anyway, or the config is accepted and fails exactly when quorum is lost.
    assert _errors(tmp_path, "") == []
    errors = _errors(tmp_path, "  sorry_server_lvs_method DR\n")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'lvsd.conf'}:5: ")
    assert "NAT only" in errors[0] and "10.0.0.99:80" in errors[0]


def test_real_server_the_data_plane_cannot_carry_is_refused_with_its_line(
        tmp_path: Path) -> None:
    errors = _errors(tmp_path, "  persistence_timeout 60\n")
    assert len(errors) == 1 and "persistence_timeout" in errors[0], errors
    assert errors[0].startswith(f"{tmp_path / 'lvsd.conf'}:")
