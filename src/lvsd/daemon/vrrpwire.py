"""The messages between ``lvsd run`` and its VRRP child process, and their framing.

One ``socketpair`` (``SOCK_STREAM``) joins the two processes; each message is a 4-byte
big-endian length and a pickle. Both ends are the same program started by the same user, so
pickle is not a trust boundary here (nothing else can write to the pair); a frame longer than
:data:`MAX_FRAME` is a protocol error that closes the channel.

Parent -> child: :class:`Apply` (run the VRRP side of this config; a reload is an ``Apply``
too), :class:`Stop`. Child -> parent: :class:`Reply` to each request (by ``req``),
:class:`Event` (a state change or an error of an instance) and :class:`Report` (the instances'
status and the child's loop health), sent after every event, within :data:`REPORT_CHECK`
seconds of any other change (counters, a learned master) and at least every
:data:`REPORT_INTERVAL` seconds. A ``Report`` always precedes the ``Event`` it explains, so
whoever reads ``/status`` after seeing an event sees the state the event announced.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lvsd.config.model import Config
    from lvsd.status.model import InstanceStatus

MAX_FRAME = 64 << 20
REPORT_INTERVAL = 1.0
REPORT_CHECK = 0.05
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class Apply:
    """Run ``config``'s VRRP side (start, reload: the child keeps unchanged runners)."""

    req: int
    config: Config
    transport: str
    secrets: tuple[str, ...] = ()
    mono_offset: float = 0.0  # the parent's wall - monotonic, so timestamps agree


@dataclass(frozen=True)
class Stop:
    """Stop every runner gracefully (priority 0, VIPs removed, notify_stop), then exit."""

    req: int
    timeout: float


@dataclass(frozen=True)
class Reply:
    req: int
    ok: bool
    error: str | None = None
    detail: tuple[str, ...] = ()  # what was done ("VRRP VI_1 started", ...)


@dataclass(frozen=True)
class Event:
    """A runner's ``on_event``: ``kind`` "state" (info: previous, state, reason) or "error"."""

    name: str
    kind: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopHealth:
    """The child's event loop as its watchdog saw it (:mod:`lvsd.daemon.loopwatch`)."""

    max_stall: float = 0.0
    last_stall: float = 0.0
    stalls_over_threshold: int = 0
    threshold: float = 0.0


@dataclass(frozen=True)
class Report:
    instances: tuple[InstanceStatus, ...]
    loop: LoopHealth = field(default_factory=LoopHealth)


Message = Apply | Stop | Reply | Event | Report


def encode(msg: Message) -> bytes:
    body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


class ChannelClosed(Exception):
    """The other process closed the pair (exited) or sent something that is not a frame."""


async def read_message(reader: asyncio.StreamReader) -> Message:
    try:
        head = await reader.readexactly(_LEN.size)
        (n,) = _LEN.unpack(head)
        if n > MAX_FRAME:
            raise ChannelClosed(f"frame of {n} bytes")
        body = await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ChannelClosed(str(exc) or "closed") from None
    try:
        msg = pickle.loads(body)  # our own child/parent, over a private socketpair
    except Exception as exc:  # a frame we cannot decode ends the channel, it is not fatal
        raise ChannelClosed(f"undecodable frame: {exc}") from None
    if not isinstance(msg, Apply | Stop | Reply | Event | Report):
        raise ChannelClosed(f"unexpected message {type(msg).__name__}")
    return msg
