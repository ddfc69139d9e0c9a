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

Look-alike letters are a second, separate matter: :func:`skeleton` maps a text to the
ASCII letters it *looks* like (NFKC, then :data:`CONFUSABLES`, a compact table of the
Cyrillic, Greek and Latin letters that are drawn like ASCII ones), for checks that must not
be defeated by swapping ``a`` for Cyrillic ``а``. It changes what a text says when the text
really is Cyrillic or Greek, so a check that uses it also checks the text as it is.

Examples
--------
>>> visible_text("wa\\u200btermark\\u200e\\ufeff\\ufe01")
'watermark'
>>> skeleton("w\\u0430t\\u0435rm\\u0430rk \\uff11")  # Cyrillic a, e; fullwidth 1
'watermark 1'
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["CONFUSABLES", "INVISIBLE", "skeleton", "visible_text"]

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


#: Letters drawn like an ASCII letter in common fonts -> that ASCII letter: Cyrillic and
#: Greek capitals and small letters, and a few Latin variants that NFKC keeps (after NFKC,
#: which already maps fullwidth, mathematical and ligature forms). A compact subset of
#: Unicode's confusables (UTS #39) for the three scripts that mix with English text.
CONFUSABLES: dict[str, str] = {
    # Cyrillic small
    "\u0430": "a", "\u0441": "c", "\u0501": "d", "\u0435": "e", "\u04bb": "h", "\u0456": "i",
    "\u0458": "j", "\u04cf": "l", "\u043e": "o", "\u0440": "p", "\u051b": "q", "\u0455": "s",
    "\u0443": "y", "\u0445": "x", "\u051d": "w", "\u0461": "w", "\u0457": "i", "\u0491": "r",
    # Cyrillic capital
    "\u0410": "A", "\u0412": "B", "\u0421": "C", "\u0415": "E", "\u041d": "H", "\u0406": "I",
    "\u0408": "J", "\u041a": "K", "\u041c": "M", "\u041e": "O", "\u0420": "P", "\u051a": "Q",
    "\u0405": "S", "\u0422": "T", "\u0425": "X", "\u04ae": "Y", "\u0423": "Y", "\u051c": "W",
    "\u04c0": "I", "\u0417": "3",
    # Greek capital
    "\u0391": "A", "\u0392": "B", "\u0395": "E", "\u0396": "Z", "\u0397": "H", "\u0399": "I",
    "\u039a": "K", "\u039c": "M", "\u039d": "N", "\u039f": "O", "\u03a1": "P", "\u03a4": "T",
    "\u03a5": "Y", "\u03a7": "X", "\u03f9": "C", "\u037f": "J",
    # Greek small
    "\u03b1": "a", "\u03b9": "i", "\u03ba": "k", "\u03bd": "v", "\u03bf": "o", "\u03c1": "p",
    "\u03c5": "u", "\u03c7": "x", "\u03f2": "c", "\u03f3": "j", "\u03b3": "y",
    # Latin variants
    "\u0131": "i", "\u0237": "j", "\u0251": "a", "\u0261": "g", "\u01c0": "l", "\u0269": "i",
    "\u1d00": "A", "\u0299": "B", "\u1d04": "C", "\u1d05": "D", "\u1d07": "E", "\u029c": "H",
    "\u026a": "I", "\u1d0a": "J", "\u1d0b": "K", "\u029f": "L", "\u1d0d": "M", "\u0274": "N",
    "\u1d0f": "O", "\u1d18": "P", "\u0280": "R", "\u1d1b": "T", "\u1d1c": "U", "\u1d20": "V",
    "\u1d21": "W", "\u028f": "Y", "\u1d22": "Z",
}

_SKELETON_TABLE = str.maketrans(CONFUSABLES)


def skeleton(text: str) -> str:
    """The visible ``text`` with every letter replaced by the ASCII letter it looks like.

    :func:`visible_text`, then :data:`CONFUSABLES` and Unicode NFKC (fullwidth, mathematical, ligature and other
    compatibility forms to their plain letters; no-break and other spaces to a space),
    then :data:`CONFUSABLES`. Text that is plain ASCII comes back unchanged.

    Parameters
    ----------
    text
        Any text, possibly with look-alike letters from other scripts.

    Returns
    -------
    str
        The text as the ASCII letters it looks like (letters of other scripts that look
        like no ASCII letter are kept).
    """
    text = visible_text(text)
    if text.isascii():
        return text
    # the table first as well: NFKC turns a few look-alikes (lunate sigma) into letters
    # that look like no ASCII letter
    text = unicodedata.normalize("NFKC", text.translate(_SKELETON_TABLE))
    return text.translate(_SKELETON_TABLE)
