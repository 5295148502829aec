"""Which values are secret: the one list every output path redacts from.

Theory of operation
-------------------
keepalived.conf has two secrets: a VRRP instance's ``auth_pass`` (the VRRPv2 password, also
the IPsec-AH key) and the top-level ``SSL { password }`` (the client key's passphrase).
:data:`_SECRETS` names each once -- the keyword that carries it and the model field that holds
it -- and everything else is derived:

* :data:`SECRET_KEYWORDS`: the lexer redacts these keywords' values in the lines it quotes and
  remembers every value given to them, however malformed the line (config/lexer.py), with
  :func:`secret_keyword` (also a keyword run into a quote or a backslash: ``auth_pass"x``,
  ``auth_pass`` + backslash) and :func:`secret_words` (a value on the line or lines after a
  keyword that has none on its own: the next line, a ``{ }`` block, a backslash continuation
  -- keepalived reads those lines as unknown keywords and echoes them in its errors);
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


def secret_keyword(word: str) -> bool:
    """Whether a config word is a secret keyword, or one run into what follows it (a quote,
    a backslash: anything but a letter, digit or ``_``, so ``password_file`` is not)."""
    for kw in SECRET_KEYWORDS:
        if word == kw:
            return True
        if word.startswith(kw):
            nxt = word[len(kw)]
            if not (nxt.isalnum() or nxt == "_"):
                return True
    return False


def secret_words(tokens: list[str], after_keyword: bool) -> tuple[list[str], bool]:
    """The secret values among one line's ``tokens`` and whether the next line's words are
    secret too. ``after_keyword``: this line follows a secret keyword still waiting for its
    value (every word but braces is then a secret). A secret keyword's own line gives the
    words after it; with none (``auth_pass`` alone, ``auth_pass {``, ``auth_pass \\``) the
    value is on the next line(s) -- until one has a word or closes a block.
    """
    if after_keyword:
        words = [t for t in tokens if t not in "{}"]
        return words, not words and "}" not in tokens
    if not tokens or not secret_keyword(tokens[0]):
        return [], False
    words = [t for t in tokens[1:] if t not in "{}"]
    return words, not words and "}" not in tokens[1:]


def config_secrets(cfg: Config | None) -> list[str]:
    """The secret values set in ``cfg`` (none for None), in model order."""
    if cfg is None:
        return []
    out = [i.auth_pass for i in cfg.vrrp_instances if i.auth_pass]
    ssl = cfg.global_defs.ssl
    if ssl is not None and ssl.password:
        out.append(ssl.password)
    return out
