"""A script's command line as keepalived splits it into words; how it shows one.

keepalived never hands a configured command to a shell: ``set_script_params_array()``
(lib/notify.c) splits the string with ``alloc_strvec_quoted_escaped()`` (lib/parser.c) and
``system_call_script()`` ``execve()``s the words. So ``/usr/bin/touch /x/marker;id`` is the
program ``/usr/bin/touch`` with the one argument ``/x/marker;id``, and ``$(id -u)`` is text.

The splitting rules (lib/parser.c ``alloc_strvec_quoted_escaped``):

* words are separated by blanks (space, tab, ``\\f``, ``\\n``, ``\\r``, ``\\v``);
* ``"..."`` and ``'...'`` quote (blanks and the other quote are then plain text); quotes
  may join parts of one word (``a"b c"d`` is ``ab cd``); ``""`` is an empty word;
* a backslash escapes everywhere, inside either quote too: ``\\a \\b \\E \\f \\n \\r \\t \\v``,
  ``\\xHH...`` (hex digits, as many as follow), ``\\cX`` (control character), ``\\0``-``\\777``
  (up to three octal digits), and any other character stands for itself (``\\"``, ``\\\\``);
* an unterminated quote or a backslash at the very end is an error.
"""

from __future__ import annotations

__all__ = ["ScriptParseError", "cmd_str", "file_test_path", "split_words"]

#: lib/parser.h WHITE_SPACE_STR
WHITE_SPACE = " \t\f\n\r\v"

_SIMPLE = {"a": "\a", "b": "\b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
           "v": "\v"}
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"


class ScriptParseError(ValueError):
    """A command line keepalived would not parse; the message is keepalived's."""


def _escape(src: str, i: int) -> tuple[str, int]:
    """The character a backslash at ``src[i - 1]`` stands for, and where parsing goes on."""
    c = src[i]
    if c == "x" and i + 1 < len(src) and src[i + 1] in _HEX:
        v = 0
        i += 1
        while i < len(src) and src[i] in _HEX:
            v = (v << 4 | int(src[i], 16)) & 0xFF  # a C char: wraps
            i += 1
        return chr(v), i
    if c == "c" and i + 1 < len(src):
        return chr(ord(src[i + 1]) & 0x1F), i + 2
    if c in _OCT:
        v = int(c)
        i += 1
        for _ in range(2):
            if i < len(src) and src[i] in _OCT:
                v = (v << 3) + int(src[i])
                i += 1
        return chr(v & 0xFF), i
    return _SIMPLE.get(c, c), i + 1


def split_words(src: str) -> list[str]:
    """``src`` split into words as lib/parser.c ``alloc_strvec_quoted_escaped()`` does.

    Raises :class:`ScriptParseError` (keepalived's message) for an unterminated quote, a
    backslash at the end, or a line without any word.
    """
    words: list[str] = []
    i, n = 0, len(src)
    while i < n:
        while i < n and src[i] in WHITE_SPACE:
            i += 1
        if i >= n:
            break
        cur: list[str] = []
        quote = ""
        while i < n:
            c = src[i]
            if c == "\\":
                i += 1
                if i >= n:
                    raise ScriptParseError(f"Missing escape char at end: '{src}'")
                ch, i = _escape(src, i)
                cur.append(ch)
            elif quote:
                if c == quote:
                    quote = ""
                else:
                    cur.append(c)
                i += 1
            elif c in "\"'":
                quote = c
                i += 1
            elif c in WHITE_SPACE:
                break
            else:
                cur.append(c)
                i += 1
        if quote:
            raise ScriptParseError(f"String '{src}': missing terminating {quote}")
        words.append("".join(cur))
    if not words:
        raise ScriptParseError(f"Unable to parse script '{src}' - ignoring")
    return words


def cmd_str(args: list[str] | tuple[str, ...]) -> str:
    """How keepalived shows a script (lib/notify.c ``cmd_str_r``): every word in single quotes,
    except a first word that is a ``<`` / ``>`` redirection."""
    return " ".join(a if i == 0 and a[:1] in ("<", ">") else f"'{a}'"
                    for i, a in enumerate(args))


def file_test_path(args: list[str] | tuple[str, ...]) -> str | None:
    """The file of a ``</path`` script, or None.

    A first word ``<`` [blanks] ``/...`` only tests that the file can be opened: keepalived
    does not exec it but hands ``cmd_str()`` to ``system()`` (lib/notify.c
    ``check_script_secure`` returns SC_SYSTEM, ``system_call_script``)."""
    first = args[0] if args else ""
    if first[:1] != "<":
        return None
    rest = first[1:].lstrip(" \t")
    return rest if rest[:1] == "/" else None
