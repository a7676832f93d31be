"""negotiation/engine/names.py: what "the same item name" and "a valid handle" mean (pure Python, no database)."""

from __future__ import annotations

import unicodedata

import pytest

from negotiation.engine.names import HANDLE_RULE, clean_name, handle_problem, name_key
from negotiation.engine.routing import leading_mentions, resolve_recipients

COMPOSED, DECOMPOSED = "Caf\u00e9", "Cafe\u0301"


@pytest.mark.parametrize(("a", "b"), [
    ("İpod", "ipod"),            # Turkish capital dotted I: Postgres lower() and Python lower() disagreed
    ("İPOD", "ipod"),
    ("IPOD", "ipod"),
    ("ΟΔΟΣ", "οδοσ"),            # Greek capital sigma vs medial sigma
    ("ΟΔΟΣ", "οδος"),            # ... and final sigma
    ("οδος", "οδοσ"),
    (COMPOSED, DECOMPOSED),       # one name in two Unicode forms
    ("CAFE\u0301", "café"),       # combining accent on a capital
    ("Straße", "STRASSE"),        # German sharp s folds to ss
    ("Straße", "strasse"),
    ("ﬁle", "FILE"),              # ligature
    ("  iPhone Case ", "IPHONE CASE"),
])
def test_the_same_name(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)


@pytest.mark.parametrize(("a", "b"), [
    ("ıpod", "ipod"),             # Turkish dotless i is its own letter
    ("Café", "Cafe"),             # accents count
    ("ｉｐｏｄ", "ipod"),           # no compatibility folding
    ("Brass Widget", "Brass  Widget"),
])
def test_different_names(a: str, b: str) -> None:
    assert name_key(a) != name_key(b)


def test_names_are_stored_nfc() -> None:
    assert clean_name(DECOMPOSED) == COMPOSED and unicodedata.is_normalized("NFC", clean_name(" " + DECOMPOSED))


@pytest.mark.parametrize("handle", ["@QuickTech", "@Ohrwurm_Köln", "@東京電機", "@Σοφία", "@Müller2", "@हिन्दी",
                                    "@_", "@" + "x" * 50, "@٣٤"])
def test_handles_of_any_script(handle: str) -> None:
    assert handle_problem(clean_name(handle)) is None


@pytest.mark.parametrize("handle", ["QuickTech", "@", "@" + "x" * 51, "@Quick Tech", "@Quick-Tech", "@a.b",
                                    "@€uro", "@\u0301x", "@a@b", "@😀"])
def test_handles_refused_with_the_whole_rule(handle: str) -> None:
    assert handle_problem(handle) == HANDLE_RULE


def test_the_rule_says_what_is_allowed() -> None:
    assert "letters (any script" in HANDLE_RULE and "digits" in HANDLE_RULE and "underscores" in HANDLE_RULE
    assert "@Ohrwurm_Köln" in HANDLE_RULE and "@東京電機" in HANDLE_RULE


def test_mentions_of_unicode_handles_route_in_either_form_and_case() -> None:
    active = ["@Ohrwurm_Köln", "@東京電機", "@QuickTech"]
    decomposed = unicodedata.normalize("NFD", "@ohrwurm_KÖLN")
    assert leading_mentions(f"{decomposed}, @東京電機: best price?") == (decomposed, "@東京電機")
    to, events = resolve_recipients(to=[], text=f"{decomposed} and @東京電機: best price?", active=active)
    assert to == ("@Ohrwurm_Köln", "@東京電機") and events == []
    # a mention mid-sentence still addresses nobody
    assert resolve_recipients(to=[], text="Can @東京電機 beat this?", active=active)[0] == tuple(active)
