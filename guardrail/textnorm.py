"""The one invisible-text normaliser: what a reader sees of a text.

Text leaves guardrail with characters that have no glyph: the embedded C2PA manifest
(``C2PATextManifestWrapper``: U+FEFF followed by one variation selector per manifest byte,
about 17 KB for a signed text) and, in pasted or attacked copies, zero-width characters.
Everything that reasons about the *prose* - the text-watermark detector's tokeniser, the
content fingerprint that recovers a stripped text's record, the bias audit's scorers -
removes the same set first, :data:`INVISIBLE`, through :func:`visible_text`:

* U+FEFF ZERO WIDTH NO-BREAK SPACE (the wrapper's magic, also a stray byte-order mark);
* U+FE00-U+FE0F and U+E0100-U+E01EF, the 256 variation selectors (the wrapper's bytes);
* U+200B ZERO WIDTH SPACE, U+200C ZERO WIDTH NON-JOINER, U+200D ZERO WIDTH JOINER;
* U+200E LEFT-TO-RIGHT MARK and U+200F RIGHT-TO-LEFT MARK;
* U+2060 WORD JOINER.

All of these are Unicode format or variation characters (Default_Ignorable_Code_Point):
they add no letter, and one can be slipped between two letters without any visible change,
which splits a word for a tokeniser and changes an exact hash. The left-to-right and
right-to-left marks belong with the zero-width characters for that reason: a mark is an
invisible letter of one direction, it never reorders letters (only the neutral characters
next to it), so a text that differs from another only by marks reads as the same words.

Kept, because they are not invisible in that sense: the bidirectional embedding, override
and isolate controls (U+202A-U+202E, U+2066-U+2069), which reorder whole runs of the
displayed text, and the soft hyphen (U+00AD), which shows as a hyphen at a line break.

Examples
--------
>>> visible_text("wa\\u200btermark\\u200e\\ufeff\\ufe01")
'watermark'
"""

from __future__ import annotations

import re

__all__ = ["INVISIBLE", "visible_text"]

#: The characters :func:`visible_text` removes (see the module docstring for the choice).
INVISIBLE: frozenset[str] = frozenset(
    ["\ufeff", "\u2060"]
    + [chr(c) for c in range(0x200B, 0x2010)]
    + [chr(c) for c in range(0xFE00, 0xFE10)]
    + [chr(c) for c in range(0xE0100, 0xE01F0)])

_INVISIBLE_RE = re.compile("[" + "".join(sorted(INVISIBLE)) + "]")


def visible_text(text: str) -> str:
    """``text`` without the :data:`INVISIBLE` characters; nothing else is changed.

    Parameters
    ----------
    text
        Any text, possibly carrying an embedded C2PA manifest or zero-width characters.

    Returns
    -------
    str
        The text as a reader sees it: same characters, same order, same white space.
    """
    return _INVISIBLE_RE.sub("", text)
