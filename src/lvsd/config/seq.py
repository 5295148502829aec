"""keepalived's ``~SEQ`` line sequences: one config line repeated for a range of numbers.

Theory of operation
-------------------
keepalived 2.x (lib/parser.c ``add_seq()`` and ``read_line()``) reads a line
``~SEQ(VAR, START, STEP, END) TEXT`` (also ``~SEQ(VAR, START, END)`` with a step of +/-1 and
``~SEQ(VAR, END)`` counting from 1, or from -1 for a negative END) as TEXT repeated once for
each value, with ``$VAR`` / ``${VAR}`` replaced by the value. ``~SEQx`` writes the values in
hexadecimal (for IPv6 addresses) and only allows non-negative numbers. Numbers are read as C's
``strtol(..., 0)`` does (``0x1f`` hex, ``017`` octal). TEXT may itself start with ``~SEQ``
(nested loops).

:func:`parse_seq` is pure: it returns the parsed header (or keepalived's error message) and
:func:`expand` the values; the grammar applies them to its logical lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEAD_RE = re.compile(r"~SEQ(x?)[ \t]*\(")
_STRTOL_RE = re.compile(r"[ \t]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
MAX_VALUES = 100_000  # a typo'd END must not make the loader allocate millions of lines


@dataclass(frozen=True, slots=True)
class Seq:
    var: str
    start: int
    step: int
    end: int
    hex: bool
    text: str  # what follows the closing ')'


def is_seq(text: str) -> bool:
    return text.startswith("~SEQ")


def _strtol(s: str, i: int) -> tuple[int, int]:
    """C ``strtol(p, &end, 0)``: (value, index after it); no digits gives (0, i)."""
    m = _STRTOL_RE.match(s, i)
    if m is None:
        return 0, i
    sign, digits = m.group(1), m.group(2)
    if digits[:2] in ("0x", "0X"):
        v = int(digits, 16)
    elif len(digits) > 1 and digits[0] == "0":
        v = int(digits, 8)
    else:
        v = int(digits, 10)
    return (-v if sign == "-" else v), m.end()


def parse_seq(buf: str) -> Seq | str:
    """A ``~SEQ(...) TEXT`` line: the :class:`Seq`, or keepalived's error message."""
    invalid_def = f"Invalid ~SEQ definition '{buf}'"
    m = _HEAD_RE.match(buf)
    if m is None:
        return f"Invalid ~SEQ specification '{buf}'"
    hexa = m.group(1) == "x"
    p = m.end()
    p += len(buf[p:]) - len(buf[p:].lstrip(" \t"))
    var_m = re.compile(r"[^ \t,)]*").match(buf, p)
    var = var_m.group(0) if var_m else ""
    p = var_m.end() if var_m else p
    while p < len(buf) and buf[p] in " \t":
        p += 1
    if p >= len(buf) or buf[p] == ")" or not var:
        return invalid_def
    close = buf.find(")", p)
    if close < 0:
        return invalid_def
    args = buf[p + 1:close + 1]  # the numbers and the ')' (keepalived's seq_buf)
    nums: list[int] = []
    q = 0
    while True:
        v, q = _strtol(args, q)
        nums.append(v)
        while q < len(args) and args[q] in " \t":
            q += 1
        if q < len(args) and args[q] == ")":
            break
        if q >= len(args) or args[q] != "," or len(nums) == 3:
            return invalid_def
        q += 1
    if len(nums) == 1:
        end = nums[0]
        step = -1 if end < 1 else 1
        start = -1 if end < 0 else 1
    elif len(nums) == 2:
        start, end = nums
        step = 1 if start <= end else -1
    else:
        start, step, end = nums
        if not step or (start < end and step < 0) or (start > end and step > 0):
            return f"Invalid ~SEQ values '{buf}'"
    if hexa and (start < 0 or end < 0):
        return f"~SEQx is only valid for positive numbers '{buf}'"
    text = buf[close + 1:].lstrip(" \t")
    return Seq(var, start, step, end, hexa, text)


def values(seq: Seq) -> list[str]:
    """The values of ``seq`` as keepalived prints them (``%ld`` or ``%lx``)."""
    out: list[str] = []
    v = seq.start
    while (seq.step > 0 and v <= seq.end) or (seq.step < 0 and v >= seq.end):
        out.append(format(v, "x") if seq.hex else str(v))
        if len(out) >= MAX_VALUES:
            break
        v += seq.step
    return out


def substitute(text: str, var: str, value: str) -> str:
    """``$VAR`` and ``${VAR}`` replaced (a longer name such as ``$VARX`` is left alone)."""
    pat = re.compile(r"\$\{" + re.escape(var) + r"\}|\$" + re.escape(var) + r"(?![A-Za-z0-9_])")
    return pat.sub(lambda _m: value, text)
