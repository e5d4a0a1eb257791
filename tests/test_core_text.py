"""shoal.core.text.printable: text from the hub or the disk (device names, paths, error
messages) is made safe to show on a terminal or in a log: every control character is escaped
visibly, everything printable is left as it is."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.core.text import printable


def _dangerous(ch: str) -> bool:
    """What must never reach a terminal raw: C0, DEL, C1 (Cc), bidi and line controls,
    surrogates (they cannot even be encoded to UTF-8)."""
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in (
        "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@pytest.mark.parametrize("raw, shown", [
    ("plain.txt", "plain.txt"),
    ("photos/été 2024/IMG_0001.jpg", "photos/été 2024/IMG_0001.jpg"),
    ("日本語/файл 🐟.txt", "日本語/файл 🐟.txt"),
    ("back\\slash", "back\\slash"),
    ("osc52\x1b]52;c;ZXZpbA==\x07.txt", "osc52\\x1b]52;c;ZXZpbA==\\x07.txt"),
    ("title\x1b]0;pwned\x1b\\", "title\\x1b]0;pwned\\x1b\\"),
    ("csi\x1b[2J", "csi\\x1b[2J"),
    ("c1 csi \x9b2J and st \x9c", "c1 csi \\x9b2J and st \\x9c"),
    ("osc c1 \x9d0;x\x07", "osc c1 \\x9d0;x\\x07"),
    ("nul\x00del\x7f", "nul\\x00del\\x7f"),
    ("two\nlines\r\tx", "two\\nlines\\r\\tx"),
    ("rtl \u202egnp.exe", "rtl \\u202egnp.exe"),
    ("isolate \u2066x\u2069", "isolate \\u2066x\\u2069"),
    ("line sep \u2028 para \u2029", "line sep \\u2028 para \\u2029"),
    ("undecodable \udcff", "undecodable \\udcff"),
    ("", ""),
])
def test_printable_table(raw, shown):
    assert printable(raw) == shown


def test_printable_accepts_non_strings():
    assert printable(None) == "None"
    assert printable(42) == "42"


@given(st.text())
@example("\x1b]52;c;ZXZpbA==\x07")
@example("\x9b\x9d\x90\x9f")
def test_output_never_holds_a_control_character(text):
    out = printable(text)
    assert not any(_dangerous(ch) for ch in out), ascii(out)
    out.encode("utf-8")  # surrogates escaped: printing never fails


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))))
def test_printable_text_is_unchanged(text):
    text = "".join(ch for ch in text if not _dangerous(ch))
    assert printable(text) == text


@given(st.text())
def test_every_dangerous_character_is_shown_as_an_escape(text):
    out = printable(text)
    for ch in set(text):
        if _dangerous(ch):
            code = ord(ch)
            assert (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") in out or ch in "\n\r\t"
