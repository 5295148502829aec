"""The descriptor limit ``lvsd run`` starts with.

The common soft ``RLIMIT_NOFILE`` of 1,024 is far too few for a director: every health check in
flight holds a socket (or a pipe for a script), and the status server, VRRP sockets and netlink
take their share. keepalived raises its soft limit at start to what its configuration needs
(lib/process.c ``set_max_file_limit``, called from check_daemon.c ``set_checker_max_fds`` and
vrrp_daemon.c ``set_vrrp_max_fds``). lvsd raises it once, before anything is opened, to
:data:`NOFILE_WANTED` or the hard limit if that is lower: an unprivileged process cannot go
above the hard limit, and a count of checkers is not a count of descriptors in flight (the
scheduler runs up to 1,024 probes at a time, the status server holds clients). The unit file
sets ``LimitNOFILE`` so the hard limit allows it.

keepalived restores the original limit in the scripts it runs; lvsd's scripts inherit the raised
soft limit (lower than the hard limit they could raise it to themselves anyway).
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

#: the soft RLIMIT_NOFILE lvsd asks for (bounded by the hard limit)
NOFILE_WANTED = 1 << 16


def raise_nofile_limit(wanted: int = NOFILE_WANTED) -> tuple[int, int]:
    """Raise the soft descriptor limit to ``min(wanted, hard)``, never lower it; returns the
    (old, new) soft limits. A refusal is logged, not raised: lvsd runs with what it has."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        log.info("open file limit raised from %d to %d (hard limit %s)", soft, target,
                 "unlimited" if hard == resource.RLIM_INFINITY else hard)
        return soft, target
    return soft, soft
