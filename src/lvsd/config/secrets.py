"""Which values are secret: the one list every output path redacts from.

Theory of operation
-------------------
keepalived.conf has two secrets: a VRRP instance's ``auth_pass`` (the VRRPv2 password, also
the IPsec-AH key) and the top-level ``SSL { password }`` (the client key's passphrase).
:data:`_SECRETS` names each once -- the keyword that carries it and the model field that holds
it -- and everything else is derived:

* :data:`SECRET_KEYWORDS`: the lexer redacts these keywords' values in the lines it quotes and
  remembers every value given to them, however malformed the line (config/lexer.py);
* :data:`SECRET_FIELDS`: the model fields ``check-config --json`` replaces by
  :data:`REDACTED` (config/dump.py); the model leaves them out of ``repr`` too;
* :func:`config_secrets`: the values of a loaded config, masked in every diagnostic
  (config/loader.py), log record (daemon/logsetup.py) and status document;
* :data:`SECRET_KEYS`: the key names the status documents never output, wherever they appear
  (status/model.py): the secret fields, plus ``auth_data`` (a VRRP advert's password field in
  packet dumps) and ``token`` (the status endpoint's bearer token).
"""

from __future__ import annotations

from collections.abc import Mapping

from lvsd.config.model import Config, SslGlobal, VrrpInstance

REDACTED = "<redacted>"

# (model class, field, keyword that sets it)
_SECRETS: tuple[tuple[type, str, str], ...] = (
    (VrrpInstance, "auth_pass", "auth_pass"),
    (SslGlobal, "password", "password"),
)

SECRET_KEYWORDS: frozenset[str] = frozenset(kw for _, _, kw in _SECRETS)
SECRET_FIELDS: Mapping[type, frozenset[str]] = {
    cls: frozenset(f for c, f, _ in _SECRETS if c is cls) for cls, _, _ in _SECRETS}
SECRET_KEYS: frozenset[str] = frozenset(
    {f for _, f, _ in _SECRETS} | {"auth_data", "token"})


def config_secrets(cfg: Config | None) -> list[str]:
    """The secret values set in ``cfg`` (none for None), in model order."""
    if cfg is None:
        return []
    out = [i.auth_pass for i in cfg.vrrp_instances if i.auth_pass]
    ssl = cfg.global_defs.ssl
    if ssl is not None and ssl.password:
        out.append(ssl.password)
    return out
