"""Shared inputs for the normalizer tests: the hostile strings every public function must survive."""

from __future__ import annotations

from hypothesis import strategies as st

from cdp.identity import normalize as norm

# Build the lazily cached tables once, so no single test (or hypothesis deadline) pays for them.
norm.normalize_country("DE")
norm.nickname_keys("Bill")


def fullwidth(text: str) -> str:
    """The full-width (East Asian keyboard) spelling of ASCII text: U+FF20 for "@", U+FF10 for "0".

    Built at run time so the test sources hold no confusable characters (ruff RUF001)."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


SURROGATE_ESCAPED = b"Mu\xfcller \xff\xfe caf\xc3 \xed\xa0\x80".decode("utf-8", errors="surrogateescape")
"""What ``open(..., errors="surrogateescape")`` yields for a Latin-1 file read as UTF-8: lone surrogates."""

HOSTILE: list[str] = [
    "",
    " ",
    "\t\r\n",
    "\x00",
    "a\x00b",
    "maria\x00@example.com",
    "\x1b[31mred\x1b[0m",
    "\x7f\x85\x9f",
    "😀",
    "👨\u200d👩\u200d👧\u200d👦",
    "🇪🇸🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "\u202eevil\u202c.exe",
    "\u2066Maria\u2069 \u2067García\u2069",
    "\ufeff\u200b\u200c\u200d\u2060",
    "مرحبا بالعالم",
    "שלום עולם 123",
    "张伟 王芳",
    "Ωμέγα Ελλάδα",
    "ᄀᄀᄀ각ᆨᆨ",
    "e\u0301\u0301\u0301\u0301\u0301\u0301",
    "\u0301leading combining",
    fullwidth("full width @ 0123"),
    "\U0010ffff\U000f0000",
    "\ud800",
    "abc\udfff",
    SURROGATE_ESCAPED,
    "x" * 10_000,
    "é" * 10_000,
    " " * 10_000,
    "1" * 10_000,
    "+" + "4" * 10_000,
    "a@" + "b" * 10_000 + ".com",
    ("Mr " * 3_000) + "Smith",
    "%s%n%x{0}{}",
    "'; DROP TABLE customer;--",
    "<script>alert(1)</script>",
    "null",
    "N/A",
    "-",
    "@",
    "+",
    "00",
    "#",
    ",,,",
    "...",
    "Mr.",
    "c/",
    "s/n",
    "nº",
    "0000-00-00",
    "99/99/9999",
]

hostile_text = st.one_of(
    st.text(),
    st.text(st.characters(codec=None, exclude_categories=())),  # includes lone surrogates and controls
    st.binary().map(lambda raw: raw.decode("utf-8", errors="surrogateescape")),
    st.sampled_from(HOSTILE),
)
"""Hypothesis strategy: arbitrary text, text with surrogates, decoded junk bytes, and the list above."""
