"""Who a script runs as: one rule for every script lvsd runs (keepalived lib/notify.c).

The rule (lib/notify.c ``set_uid_gid``, ``get_default_script_user``, ``notify_script_init``;
check_misc.c ``misc_user_handler`` / ``misc_end_handler``; vrrp_parser.c
``vrrp_vscript_user_handler`` / ``vrrp_vscript_end_handler``):

==============================  ======================================================
the script names                it runs as
==============================  ======================================================
``user group``                  user's uid, group's gid
``user``                        user's uid, **user's own primary gid** (not script_group)
nothing, ``script_user U G``    U's uid, G's gid
nothing, ``script_user U``      U's uid, U's primary gid
nothing, no ``script_user``     ``keepalived_script`` (uid, primary gid) if that user
                                exists, else the daemon's own uid:gid -- with
                                ``enable_script_security`` a missing ``keepalived_script``
                                is an error: the script is not run
==============================  ======================================================

A user or group that does not exist is an error (the script is not run; never as root
instead). Names are looked up at each start, so a user created after lvsd started is seen.
In the child the supplementary groups are reset to the one gid, as keepalived's
``set_script_env`` does (``setgroups(1, &gid)``): a script run as ``nobody`` must not keep
root's groups.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["DEFAULT_SCRIPT_USER", "Accounts", "Identity", "IdentityError", "SystemAccounts",
           "exec_credentials", "our_identity", "script_identity"]

#: lib/notify.c get_default_script_user
DEFAULT_SCRIPT_USER = "keepalived_script"


class IdentityError(LookupError):
    """The user or group a script should run as cannot be set; keepalived's message."""


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int


class Accounts(Protocol):
    """The user and group database (``pwd``/``grp``, or a table in tests)."""

    def user(self, name: str) -> tuple[int, int] | None:
        """(uid, primary gid) of ``name``, or None."""

    def group(self, name: str) -> int | None:
        """gid of ``name``, or None."""


class SystemAccounts:
    """The host's users and groups."""

    def user(self, name: str) -> tuple[int, int] | None:
        try:
            pw = pwd.getpwnam(name)
        except (KeyError, ValueError):  # ValueError: an embedded NUL
            return None
        return pw.pw_uid, pw.pw_gid

    def group(self, name: str) -> int | None:
        try:
            return grp.getgrnam(name).gr_gid
        except (KeyError, ValueError):
            return None


def _uid_gid(accounts: Accounts, user: str, group: str | None) -> Identity:
    """lib/notify.c set_uid_gid(): the user's uid and the group's gid (or the user's own)."""
    ug = accounts.user(user)
    if ug is None:
        raise IdentityError(f"Script user '{user}' does not exist")
    uid, gid = ug
    if group is not None:
        g = accounts.group(group)
        if g is None:
            raise IdentityError(f"Script group '{group}' does not exist")
        gid = g
    return Identity(uid, gid)


def script_identity(user: str | None, group: str | None, *, script_user: str | None,
                    script_group: str | None, accounts: Accounts, our: Identity,
                    security: bool = False) -> Identity:
    """uid:gid a script runs as (the table in the module docstring).

    ``user``/``group``: the script's own (``notify_master "cmd" user group``, MISC_CHECK or
    vrrp_script ``user``); ``script_user``/``script_group``: global_defs; ``our``: the daemon's
    euid:egid; ``security``: ``enable_script_security``. Raises :class:`IdentityError`.
    """
    if user:
        return _uid_gid(accounts, user, group)
    if script_user:  # global_parser.c script_user_handler -> set_default_script_user
        return _uid_gid(accounts, script_user, script_group)
    ug = accounts.user(DEFAULT_SCRIPT_USER)  # lib/notify.c get_default_script_user
    if ug is not None:
        return Identity(*ug)
    if security:
        raise IdentityError(f"Unable to set default user {DEFAULT_SCRIPT_USER} for script")
    return our


def our_identity() -> Identity:
    """The daemon's own euid:egid (lib/notify.c set_our_uid_gid)."""
    return Identity(os.geteuid(), os.getegid())


def exec_credentials(ident: Identity, our: Identity) -> dict[str, Any]:
    """``subprocess`` keywords that make the child ``ident`` (lib/notify.c set_script_env).

    Only root can change identity; a daemon that is not root runs scripts as itself (it has
    nothing more to give away) and the keywords are empty.
    """
    if our.uid != 0:
        return {}
    return {"user": ident.uid, "group": ident.gid, "extra_groups": [ident.gid]}
