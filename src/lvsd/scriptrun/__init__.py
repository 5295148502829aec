"""The one script runner (keepalived keeps it in lib/notify.c): how every script lvsd runs is
split into words, whom it runs as, when it is refused, and how it is timed out and killed.

* :mod:`~lvsd.scriptrun.words` -- keepalived's word splitting and ``cmd_str``;
* :mod:`~lvsd.scriptrun.identity` -- the user/group rule;
* :mod:`~lvsd.scriptrun.termination` -- the timeout and kill policy (sans-IO);
* :mod:`~lvsd.scriptrun.security` -- ``enable_script_security`` re-checked at exec;
* :mod:`~lvsd.scriptrun.runner` -- the async shell: :class:`ScriptRunner`.
"""

from lvsd.scriptrun.runner import (
    NOTIFY_TIMEOUT,
    Outcome,
    ScriptRunner,
    ScriptSpec,
    prepare,
    wait_stopped,
)

__all__ = ["NOTIFY_TIMEOUT", "Outcome", "ScriptRunner", "ScriptSpec", "prepare", "wait_stopped"]
