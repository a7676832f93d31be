"""What "the same item name" and "the same handle" mean, in one place, for Python and Postgres alike.

Names arrive from people and files in any script and any Unicode form: "Café" may come composed
(U+00E9) or decomposed (e + U+0301), "İPOD" from a Turkish keyboard, "STRASSE" beside "Straße".
Every name is normalised to NFC on the way in (`clean_name`), and compared by its key
(`name_key`): full Unicode case folding of the NFC text, NFC again. The key is stored in its own
column and the unique constraints sit on that column, so the database never applies a case rule of
its own (Postgres `lower()` follows the database locale and disagrees with Python on 'İ', 'ß' and
final sigma), and a check in Python and the constraint can never disagree. Pure Python: the engine,
the services, the models and the migration that fills the keys all use these functions.

The choices, each pinned by a test:
- case folding is locale-independent Unicode folding: 'ß' = 'ss', 'ς' = 'σ' = 'Σ', 'ﬁ' = 'fi';
- 'İ' (capital I with dot) folds like 'I', so 'İpod' = 'ipod' (as a Turkish 'İPOD' means), while the
  dotless 'ı' is its own letter ('ıpod' ≠ 'ipod');
- accents count: 'Café' ≠ 'Cafe', but composed and decomposed 'Café' are one name;
- no compatibility folding (NFKC): full-width 'ｉｐｏｄ' stays distinct from 'ipod'.

A handle is "@" and 1-50 characters, each a letter of any script (accents and other combining marks
included, not as the first character), a decimal digit of any script, or "_".
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

HANDLE_MAX = 50
HANDLE_RULE = (f"A handle is @ followed by 1–{HANDLE_MAX} letters (any script, accents included), digits or "
               "underscores, with no spaces, punctuation or symbols, e.g. @QuickTech, @Ohrwurm_Köln or @東京電機.")
# What the database itself checks of a handle (the constraint seller_handle_format): "@", then 1-50
# characters that are ASCII letters, digits or "_", or any non-ASCII character. Both engines read this
# pattern the same way (it names code points, never a locale's classes); the full rule above is Python's,
# applied by the model's validator before any row is written.
HANDLE_DB_RE = r"^@([0-9A-Za-z_]|[^\x01-\x7f]){1,50}$"


def clean_name(text: str) -> str:
    """A name as stored: NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", str(text)).strip()


def name_key(text: str) -> str:
    """The comparison key of an item name or handle: two names are the same iff their keys are equal."""
    folded = clean_name(text).replace("İ", "I").casefold()
    return unicodedata.normalize("NFC", folded)


def _handle_char(ch: str, first: bool) -> bool:
    category = unicodedata.category(ch)
    if ch == "_" or category == "Nd" or category.startswith("L"):
        return True
    return category.startswith("M") and not first


def handle_problem(handle: str) -> str | None:
    """None for a valid (already NFC) handle, else the rule it breaks, said in full."""
    body = handle[1:] if handle.startswith("@") else None
    if body is None or not 1 <= len(body) <= HANDLE_MAX:
        return HANDLE_RULE
    if not all(_handle_char(ch, i == 0) for i, ch in enumerate(body)):
        return HANDLE_RULE
    return None


@cache
def mark_class() -> str:
    """A regex character-class body for every combining mark (Python's \\w leaves marks out)."""
    ranges: list[tuple[int, int]] = []
    # Every combining mark lies below U+20000 or among the variation selectors at U+E0100-U+E01EF.
    for code in (*range(0x20000), *range(0xE0100, 0xE01F0)):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


__all__ = ["HANDLE_DB_RE", "HANDLE_MAX", "HANDLE_RULE", "clean_name", "handle_problem", "mark_class", "name_key"]
