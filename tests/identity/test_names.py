"""Names: display form, match keys (diacritics and transliteration), splitting, nicknames, phonetics."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from anyascii import anyascii
from hypothesis import given
from hypothesis import strategies as st

from cdp.identity.nicknames import nickname_pairs, supplement_rows
from cdp.identity.normalize import (
    NormalizationError,
    generational_suffix,
    name_match_key,
    name_match_keys,
    nickname_keys,
    normalize_name,
    phonetic_key,
    split_full_name,
)
from tests.identity.inputs import fullwidth


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # honorifics and suffixes
        ("Mr John Smith", "John Smith"),
        ("Mr. J. Smith", "J. Smith"),
        ("Mrs. Jane Smith", "Jane Smith"),
        ("Ms Smith", "Smith"),
        ("Dr. Müller", "Müller"),
        ("Prof. Dr. Hans-Peter Schmidt", "Hans-Peter Schmidt"),
        ("Herr Thomas Müller", "Thomas Müller"),
        ("Frau Anna Weber", "Anna Weber"),
        ("Sr. García", "García"),
        ("Sra. María López", "María López"),
        ("Doña Carmen Ruiz", "Carmen Ruiz"),
        ("John Smith Jr", "John Smith"),
        ("John Smith, Jr.", "John Smith"),
        ("John Smith Sr.", "John Smith"),
        ("Henry Ford II", "Henry Ford"),
        ("Robert Brown III", "Robert Brown"),
        ("Jane Doe PhD", "Jane Doe"),
        # affixes that are the whole value are names, not titles
        ("Herr", "Herr"),
        ("Don", "Don"),
        ("Don Smith", "Don Smith"),  # "Don" is never stripped: it is a given name too
        ("Jun Sato", "Jun Sato"),
        # ALL CAPS / all lower repaired, particles kept lower-case inside the name
        ("JOHN SMITH", "John Smith"),
        ("john smith", "John Smith"),
        ("MR JOHN O'BRIEN JR", "John O'Brien"),
        ("MCDONALD", "McDonald"),
        ("ronald mcdonald", "Ronald McDonald"),
        ("D'ANGELO", "D'Angelo"),
        ("SMITH-JONES", "Smith-Jones"),
        ("jean-pierre DUPONT", "Jean-Pierre Dupont"),
        ("LUDWIG VAN BEETHOVEN", "Ludwig van Beethoven"),
        ("Ludwig van BEETHOVEN", "Ludwig van Beethoven"),
        ("VAN DER BERG", "Van der Berg"),
        ("VAN MORRISON", "Van Morrison"),
        ("maría del carmen garcía lópez", "María del Carmen García López"),
        ("JUAN DE LA CRUZ", "Juan de la Cruz"),
        ("THANH LE", "Thanh Le"),
        ("MÜLLER", "Müller"),
        ("ÇELİK", "Çelik"),
        # mixed case is the person's own spelling
        ("DeShawn Jones", "DeShawn Jones"),
        ("Ludwig van Beethoven", "Ludwig van Beethoven"),
        ("McKenzie", "McKenzie"),
        ("MacDonald", "MacDonald"),
        ("Machado", "Machado"),
        ("J. SMITH", "J. Smith"),
        # surname-first with comma keeps its order for display
        ("Garcia, Maria", "Garcia, Maria"),
        ("SMITH, MR JOHN", "Smith, John"),
        # cleaning
        ("  Maria\u200b  Garcia ", "Maria Garcia"),
        ("\u202eMaria\u202c", "Maria"),
        ("張偉", "張偉"),
    ],
)
def test_normalize_name_known_answers(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "Mr.", "Dr.", ",", "Jr."])
def test_names_with_nothing_left_raise_empty(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_name(raw)
    assert info.value.reason == "empty"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John Smith Jr.", "Jr"),
        ("John Smith, Jr", "Jr"),
        ("John Smith Jnr", "Jr"),
        ("John Smith Sr.", "Sr"),
        ("Henry Ford II", "II"),
        ("Robert Brown III", "III"),
        ("John Smith", None),
        ("Jr", None),
        ("", None),
    ],
)
def test_generational_suffix_is_kept_as_evidence(raw: str, expected: str | None) -> None:
    assert generational_suffix(raw) == expected


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Müller", "muller"),
        ("MÜLLER", "muller"),
        ("Dr. Müller", "muller"),
        ("Mueller", "mueller"),
        ("Muller", "muller"),
        ("Straße", "strasse"),
        ("García", "garcia"),
        ("GARCIA", "garcia"),
        ("Núñez", "nunez"),
        ("François", "francois"),
        ("O'Brien", "obrien"),
        ("O\u2019Brien", "obrien"),
        ("Smith-Jones", "smithjones"),
        ("Jean-Pierre", "jeanpierre"),
        ("Jean Pierre", "jeanpierre"),
        ("van der Berg", "vanderberg"),
        ("Łódź", "lodz"),
        ("Đorđević", "dordevic"),
        ("Þórsdóttir", "thorsdottir"),
        ("Ærø", "aero"),
        ("Øre", "ore"),
        ("Çelik", "celik"),
        ("张伟", "zhangwei"),
        ("Владимир", "vladimir"),
        ("Maria 😀", "maria"),
        (fullwidth("MARIA"), "maria"),
    ],
)
def test_name_match_key_folds_case_diacritics_and_punctuation(raw: str, key: str) -> None:
    assert name_match_key(raw) == key


def test_transliterated_and_folded_spellings_meet() -> None:
    assert name_match_keys("Müller") == {"muller", "mueller"}
    assert name_match_keys("Mueller") == {"mueller"}
    assert name_match_keys("Muller") == {"muller"}
    assert name_match_keys("Müller") & name_match_keys("Mueller")
    assert name_match_keys("Müller") & name_match_keys("Muller")
    assert name_match_keys("Schröder") & name_match_keys("Schroeder")
    assert name_match_keys("Jäger") & name_match_keys("Jaeger")
    assert name_match_keys("Sørensen") & name_match_keys("Soerensen")
    assert name_match_keys("García") == {"garcia"}
    # different people stay apart
    assert not name_match_keys("Müller") & name_match_keys("Miller")


@pytest.mark.parametrize("raw", ["😀", "!!!", "— —", "\u0301"])
def test_names_without_letters_have_no_key(raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        name_match_key(raw)
    assert info.value.reason == "empty"


@pytest.mark.parametrize(
    ("raw", "given", "family"),
    [
        ("Garcia, Maria", "Maria", "Garcia"),
        ("GARCIA, MARIA", "Maria", "Garcia"),
        ("García López, María del Carmen", "María del Carmen", "García López"),
        ("Smith, Mr John", "John", "Smith"),
        ("Smith, John, Jr.", "John", "Smith"),
        ("Mr. J. Smith", "J.", "Smith"),
        ("John Smith", "John", "Smith"),
        ("JOHN SMITH", "John", "Smith"),
        ("John Paul Jones", "John Paul", "Jones"),  # middle names stay with the given name
        ("Maria del Carmen García López", "Maria del Carmen", "García López"),
        ("José Rodríguez López", "José", "Rodríguez López"),
        ("José Luis Rodríguez", "José Luis", "Rodríguez"),
        ("Juan Carlos García Pérez", "Juan Carlos", "García Pérez"),
        ("Juan de la Cruz", "Juan", "de la Cruz"),
        ("Ludwig van Beethoven", "Ludwig", "van Beethoven"),
        ("Vincent van der Berg", "Vincent", "van der Berg"),
        ("Van Morrison", "Van", "Morrison"),
        ("Hans-Peter Müller", "Hans-Peter", "Müller"),
        ("Dr. Thomas Müller", "Thomas", "Müller"),
        ("John Smith Jr.", "John", "Smith"),
        ("Maria", "Maria", None),
        ("Mr. Smith", None, "Smith"),
        ("Herr Müller", None, "Müller"),
    ],
)
def test_split_full_name_known_answers(raw: str, given: str | None, family: str | None) -> None:
    assert split_full_name(raw) == (given, family)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Bill", "William"),
        ("Billy", "William"),
        ("Will", "Bill"),
        ("Bob", "Robert"),
        ("Liz", "Elizabeth"),
        ("Beth", "Elizabeth"),
        ("Peggy", "Margaret"),
        ("Maggie", "Margaret"),
        ("Jim", "James"),
        ("Jack", "John"),
        ("Kate", "Katherine"),
        ("Hans", "Johannes"),
        ("Sepp", "Josef"),
        ("Fritz", "Friedrich"),
        ("Heinz", "Heinrich"),
        ("Paco", "Francisco"),
        ("Pepe", "José"),
        ("Pepe", "Jose"),
        ("Lola", "Dolores"),
        ("Chema", "José María"),
        ("Nacho", "Ignacio"),
        ("Concha", "Concepción"),
        ("Pepe", "José María"),  # middle name in the given-name field
        ("BILL", "william"),
        ("Jürgen", "Juergen"),
        ("William", "William"),
    ],
)
def test_nickname_keys_connect_nicknames_and_formal_names(a: str, b: str) -> None:
    assert nickname_keys(a) & nickname_keys(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("Bill", "James"), ("Pepe", "Francisco"), ("Hans", "Josef"), ("Liz", "Margaret"), ("Maria", "Mario")],
)
def test_nickname_keys_keep_unrelated_names_apart(a: str, b: str) -> None:
    assert not nickname_keys(a) & nickname_keys(b)


def test_nickname_keys_contain_the_names_own_keys() -> None:
    assert {"william"} <= nickname_keys("William")
    assert {"jurgen", "juergen"} <= nickname_keys("Jürgen")
    assert nickname_keys("José María") >= {"josemaria", "jose"}


def test_nickname_table_covers_english_german_and_spanish() -> None:
    rows = supplement_rows()
    languages = {row["lang"] for row in rows}
    assert {"en", "de", "es"} <= languages
    assert len(rows) >= 150
    assert all(row["formal"].strip() and row["nickname"].strip() for row in rows)
    assert len(nickname_pairs()) > 2_000  # the nicknames package's English table is loaded too


def test_every_pair_in_the_tables_meets_through_nickname_keys() -> None:
    for formal, nickname in nickname_pairs():
        if name_match_key_or_none(formal) and name_match_key_or_none(nickname):
            assert nickname_keys(formal) & nickname_keys(nickname), (formal, nickname)


def name_match_key_or_none(value: str) -> str | None:
    try:
        return name_match_key(value)
    except NormalizationError:
        return None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Müller", "Mueller"),
        ("Müller", "Muller"),
        ("Schmidt", "Schmitt"),
        ("Schmidt", "Schmid"),
        ("Smith", "Smyth"),
        ("Gonzalez", "González"),
        ("Rodriguez", "Rodrigues"),
        ("Catherine", "Katherine"),
        ("Stephen", "Steven"),
        ("Philip", "Phillip"),
        ("Vásquez", "Vazquez"),
    ],
)
def test_phonetic_key_blocks_sound_alikes_together(a: str, b: str) -> None:
    assert phonetic_key(a) == phonetic_key(b)


@pytest.mark.parametrize(("a", "b"), [("Smith", "Jones"), ("Müller", "Meyer"), ("Garcia", "Lopez")])
def test_phonetic_key_separates_different_names(a: str, b: str) -> None:
    assert phonetic_key(a) != phonetic_key(b)


def test_phonetic_key_shape() -> None:
    assert phonetic_key("Müller") == "MLR"
    assert re.fullmatch(r"[A-Z0-9]+", phonetic_key("Maria del Carmen"))
    with pytest.raises(NormalizationError):
        phonetic_key("123")
    assert phonetic_key("Y") == "Y"  # metaphone gives nothing; a real surname still gets a block key
    assert phonetic_key("Wy") == "WY"


names = st.text(
    st.characters(categories=["L", "M", "Zs", "Pd", "Po"], include_characters="'\u2019,."), max_size=40
)


@given(names)
def test_normalize_name_is_idempotent(raw: str) -> None:
    try:
        once = normalize_name(raw)
    except NormalizationError:
        return
    assert normalize_name(once) == once


@given(names)
def test_name_keys_are_idempotent_ascii_and_include_the_plain_key(raw: str) -> None:
    try:
        key = name_match_key(raw)
        keys = name_match_keys(raw)
    except NormalizationError:
        return
    assert re.fullmatch(r"[a-z0-9]+", key)
    assert name_match_key(key) == key
    assert key in keys
    assert all(re.fullmatch(r"[a-z0-9]+", k) for k in keys)
    assert keys <= nickname_keys(raw)


def _outcome(fn: Callable[[str], object], raw: str) -> object:
    try:
        return fn(raw)
    except NormalizationError as exc:
        return ("refused", exc.reason)


@given(names)
def test_match_keys_are_the_display_form_folded_whatever_case_repair_would_have_done(raw: str) -> None:
    """The keys skip normalize_name's case repair (folding makes it moot): same keys, same refusals."""
    assert _outcome(name_match_key, raw) == _outcome(lambda v: _folded(normalize_name(v)), raw)
    assert _outcome(name_match_keys, raw) == _outcome(
        lambda v: (
            {k for k in (_folded(normalize_name(v)), _folded_transliterated(normalize_name(v))) if k}
            or _refuse_empty()
        ),
        raw,
    )


def _folded(display: str) -> str:
    key = "".join(ch for ch in display if unicodedata.category(ch)[0] in "LMN")
    key = re.sub(r"[^a-z0-9]", "", str(anyascii(key.casefold())).lower())
    return key or _refuse_empty()


def _folded_transliterated(display: str) -> str:
    german = display.translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe"}))
    german = german.translate(str.maketrans({"Ü": "Ue", "ø": "oe", "Ø": "Oe", "å": "aa", "Å": "Aa"}))
    key = "".join(ch for ch in german if unicodedata.category(ch)[0] in "LMN")
    return re.sub(r"[^a-z0-9]", "", str(anyascii(key.casefold())).lower())


def _refuse_empty() -> Any:
    raise NormalizationError("empty")


@given(names)
def test_split_full_name_returns_normalized_parts(raw: str) -> None:
    try:
        given_name, family = split_full_name(raw)
    except NormalizationError:
        return
    assert given_name is not None or family is not None
    for part in (given_name, family):
        if part is not None:
            assert part == part.strip()
            assert "," not in part
