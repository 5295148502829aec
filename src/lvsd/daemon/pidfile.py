"""The pid file: a lock held for the life of ``lvsd run``, never a judge of availability.

Theory of operation
-------------------
keepalived (core/pidfile.c ``keepalived_running``/``process_running``, core/main.c) reads the
pid in the file and refuses to start ("daemon is already running") when ``kill(pid, 0)``
succeeds -- so an unrelated process that happens to have that pid, or an lvsd that has exited
but not been reaped yet, blocks the start; and on a full disk its ``pidfile_write`` leaves an
empty file. lvsd decides with a lock instead of the file's content:

1. open the file (``O_CREAT``, never truncated before the lock is ours, ``O_NOFOLLOW`` as
   keepalived, close-on-exec so scripts do not inherit it, mode 0644);
2. ``flock(LOCK_EX | LOCK_NB)`` on that descriptor, kept open until :func:`release` (the kernel
   drops the lock when the process dies, whatever state it dies in): held by another process ->
   :class:`AlreadyRunning` ("daemon is already running", keepalived's words); the file may have
   been replaced by a stopping lvsd between open and lock, so the lock counts only if the path
   still names the locked file (else try again);
3. write our pid in place (``pwrite`` + ``ftruncate``: no temporary file, and a file that
   already held a pid is rewritten within its existing block, which works on a full disk);
4. a write that fails (``ENOSPC``, ``EIO``), or a file that cannot be opened at all (missing
   directory, read-only file system), is a warning: the director starts anyway. Without a lock
   nothing prevents a second lvsd on that path; the warning says so.

:func:`release` (at stop) removes the file if the path still names the locked file, then
closes the descriptor (dropping the lock). A process holds its pid file once: the module keeps
the locked descriptor, by path, between :func:`acquire` and :func:`release`. A child forked
after :func:`acquire` shares the lock (the kernel keeps it while any copy of the descriptor
is open); its :func:`release` closes its copy and never removes the file.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_ATTEMPTS = 5  # opens raced by a stopping lvsd unlinking the file before we give up


class AlreadyRunning(Exception):
    """Another process holds the pid file's lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "its pid not written"
        super().__init__(f"daemon is already running: {who} holds the lock on pid file "
                         f"{path}; stop it or use another --pid-file")
        self.path = path
        self.pid = pid


_HELD: dict[str, tuple[int, int]] = {}  # path -> (the locked descriptor, the pid that locked)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _same_file(path: str, fd: int) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _lock(path: str) -> int | None:
    """The locked descriptor of ``path``; None when it cannot be opened (logged)."""
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, _OPEN_FLAGS, 0o644)
        except OSError as exc:
            log.warning("pid file %s: cannot open it (%s): starting without a pid file; "
                        "nothing stops a second lvsd on this path", path, exc.strerror or exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AlreadyRunning(path, pid) from None
            log.warning("pid file %s: cannot lock it (%s): starting without a pid file",
                        path, exc.strerror or exc)
            return None
        if _same_file(path, fd):
            return fd
        os.close(fd)  # unlinked (or replaced) by a stopping lvsd meanwhile: open it again
    log.warning("pid file %s: replaced %d times while locking it: starting without a pid file",
                path, _ATTEMPTS)
    return None


def acquire(path: str, pid: int | None = None) -> bool:
    """Lock ``path`` for this process and write ``pid`` (default ours) in it. True when the
    lock is held (even if the write failed: logged); False when there is no pid file (logged);
    raises :class:`AlreadyRunning` when another process holds the lock."""
    if path in _HELD:
        return True
    fd = _lock(path)
    if fd is None:
        return False
    _HELD[path] = (fd, os.getpid())
    data = f"{os.getpid() if pid is None else pid}\n".encode("ascii")
    try:
        if os.pwrite(fd, data, 0) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.ftruncate(fd, len(data))
    except OSError as exc:
        # never leave someone else's pid in it: 'lvsd reload' would signal that process
        # (truncating needs no space)
        try:
            os.ftruncate(fd, 0)
        except OSError as trunc:
            log.debug("pid file %s: truncate: %s", path, trunc)
        log.warning("pid file %s: cannot write the pid (%s): running anyway, locked; "
                    "'lvsd reload' cannot find the daemon through it", path,
                    exc.strerror or exc)
    return True


def release(path: str) -> None:
    """Remove ``path`` if it is still the file we locked, then drop the lock."""
    held = _HELD.pop(path, None)
    if held is None:
        return
    fd, owner = held
    try:
        # a forked child (the VRRP process) inherited the descriptor: it only lets go of it
        if owner == os.getpid() and _same_file(path, fd):
            os.unlink(path)
    except OSError as exc:
        log.warning("pid file %s: cannot remove it: %s", path, exc.strerror or exc)
    finally:
        os.close(fd)
