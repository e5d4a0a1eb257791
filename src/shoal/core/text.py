"""Text from elsewhere made safe to show: the one escaping rule for terminal output and logs.

Device names, paths and error messages come from the hub (another device wrote them) or from
the disk, so they may carry terminal control sequences: `ESC ] 52 ; ...` sets the clipboard of
many terminals, `ESC ] 0 ;` the window title, 8-bit C1 codes (U+009B CSI, U+009D OSC) do the
same on terminals that honour them, and a newline forges a line of output or of the log.
`printable` escapes every such character visibly and leaves everything printable, including
non-ASCII text, as it is.
"""

from __future__ import annotations

import re

# C0 (incl. newline and tab: one field must stay one line), DEL, C1; the bidirectional
# controls that reorder what is shown (U+202E makes "gnp.exe" read "exe.png"); the line and
# paragraph separators; lone surrogates (undecodable file names; they cannot even be encoded
# for the terminal).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
                     "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """`value` as text (str() of it) with every control character escaped as \\xNN, \\uNNNN,
    \\n, \\r or \\t. Printable text comes back unchanged; a backslash already there is left
    as it is (for display only: this is not a reversible encoding). Raises nothing."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)
