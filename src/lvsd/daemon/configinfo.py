"""What the daemon reads out of a loaded :class:`~lvsd.config.model.Config`: its errors and
warnings as lines and its secrets (the list is :mod:`lvsd.config.secrets`).

Change detection compares model objects directly: a ``pos`` does not take part in their
equality (config/model.py), so a reload that only moves lines changes nothing.
"""

from __future__ import annotations

from lvsd.config import secrets
from lvsd.config.model import Config, Severity


def config_errors(cfg: Config) -> list[str]:
    return [str(d) for d in cfg.diagnostics if d.severity is not Severity.WARNING]


def config_warnings(cfg: Config) -> list[str]:
    return [str(d) for d in cfg.diagnostics if d.severity is Severity.WARNING]


def config_secrets(cfg: Config | None) -> list[str]:
    """The secret values of ``cfg`` (see :func:`lvsd.config.secrets.config_secrets`)."""
    return secrets.config_secrets(cfg)
