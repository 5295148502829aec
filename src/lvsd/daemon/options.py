"""What ``lvsd run`` was asked to do (:class:`Options`) and the one-line reason not to start."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_STATUS_LISTEN = "127.0.0.1:9330"
DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"
DEFAULT_PID_FILE = "/run/lvsd.pid"
MODES = ("full", "vrrp-only", "check-only")


@dataclass
class Options:
    config_file: str
    config_id: str | None = None
    dataplane: str = "ipvs"
    status_listen: str | None = DEFAULT_STATUS_LISTEN  # None: no status endpoint
    status_token_file: str | None = None
    pid_file: str | None = None
    log_format: str = "text"
    mode: str = "full"
    dump_dir: str = "/tmp"
    vrrp_transport: str = "raw"
    sweep_interval: float = 10.0
    stop_timeout: float = 10.0
    nft_table: str = "lvsd"
    verbose: bool = False
    # refuse to start / reject a reload on any config error, not only on what keepalived
    # itself cannot run (opt-in, for CI pipelines)
    strict: bool = False


class StartupError(Exception):
    """A reason not to start, printed as one line (no traceback)."""
