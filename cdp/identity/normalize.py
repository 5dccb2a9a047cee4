"""Normalizers: raw source values → canonical forms for storage, and keys for matching and blocking.

Every function here is pure: no I/O beyond reading the data that the libraries ship (once, cached), no
database, no Flask, no clock (``today`` is passed in). They sit between mapping and encryption on the
write path, so two promises matter more than anything else:

* **Only** :class:`NormalizationError` escapes for bad input — whatever a source sends (emoji, bidi
  overrides, NUL bytes, lone surrogates from ``surrogateescape`` decoding, 10 kB fields). Ingestion
  quarantines the record with ``error.reason``; any other exception would abort a whole chunk.
* An error message **never contains the input**. Messages are fixed per reason code, and errors raised
  from a library failure are raised outside the ``except`` block, so neither ``__cause__`` nor
  ``__context__`` drags the library's message (which usually quotes the value) into a log or traceback.

Storage forms (``display``/``canonical``, E.164, ISO codes, ``date``) stay faithful to what the person
gave us; *match* forms (``match_key``, :func:`name_match_keys`, :func:`nickname_keys`,
:func:`phonetic_key`, :func:`normalize_street`) are deliberately lossy and exist only to find candidates
and compare them. Nothing lossy is ever written back over a stored value.

Libraries do the heavy lifting: email-validator (syntax and IDNA), phonenumbers (every national format,
E.164), anyascii (transliteration/diacritic folding), jellyfish (metaphone), pycountry (ISO 3166 and its
translations), nicknames (English nickname table, see :mod:`cdp.identity.nicknames`).
"""

from __future__ import annotations

import contextlib
import functools
import gettext
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal

import jellyfish
import phonenumbers
import pycountry
from anyascii import anyascii
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from cdp.identity.nicknames import nickname_pairs

__all__ = [
    "MAX_AGE_YEARS",
    "MESSAGES",
    "PLACEHOLDER_DATES",
    "AddressParts",
    "NormalizationError",
    "NormalizedEmail",
    "PlusAddressing",
    "Reason",
    "clean_text",
    "day_month_swapped",
    "generational_suffix",
    "name_match_key",
    "name_match_keys",
    "nickname_keys",
    "normalize_country",
    "normalize_email",
    "normalize_name",
    "normalize_national_id",
    "normalize_phone",
    "normalize_postcode",
    "normalize_street",
    "parse_address_line",
    "parse_date",
    "parse_date_of_birth",
    "phone_is_placeholder",
    "phonetic_key",
    "split_full_name",
]

# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------

Reason = Literal[
    "not_text",
    "empty",
    "too_long",
    "control_characters",
    "invalid_encoding",
    "invalid_email",
    "invalid_phone",
    "invalid_postcode",
    "unknown_country",
    "unparseable_date",
    "impossible_date",
    "implausible_date",
    "placeholder_date",
    "invalid_national_id",
]
"""Machine-readable reason codes: what quarantine records and what dashboards count."""

MESSAGES: Final[dict[str, str]] = {
    "not_text": "value is not text",
    "empty": "value is empty after normalization",
    "too_long": "value is longer than allowed",
    "control_characters": "value contains control characters",
    "invalid_encoding": "value contains undecodable bytes (lone surrogates)",
    "invalid_email": "email address is not valid",
    "invalid_phone": "phone number is not valid",
    "invalid_postcode": "postcode is not valid for its country",
    "unknown_country": "country is not recognised",
    "unparseable_date": "date does not match any declared format",
    "impossible_date": "date does not exist in the calendar",
    "implausible_date": "date is not a plausible date of birth",
    "placeholder_date": "date is a known placeholder",
    "invalid_national_id": "national identifier is not valid",
}
"""The only messages a :class:`NormalizationError` can carry: fixed text, so no input can leak."""


class NormalizationError(ValueError):
    """A raw value cannot be turned into a canonical form.

    ``reason`` is a stable code for quarantine and metrics. The message comes from :data:`MESSAGES` and
    is chosen by reason alone — the constructor takes no free text on purpose, so no caller can put the
    offending value (personal data) into a message that ends up in logs or the quarantine table.
    """

    def __init__(self, reason: Reason) -> None:
        self.reason: Reason = reason
        super().__init__(MESSAGES[reason])

    def __reduce__(self) -> tuple[type[NormalizationError], tuple[Reason]]:
        # Default exception pickling would call cls(message); workers in a process pool need cls(reason).
        return (type(self), (self.reason,))


# --------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------

_INVISIBLE_RE: Final = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
"""Zero-width, soft-hyphen and bidi embedding/override/isolate characters: invisible in a UI, yet they make
two equal-looking values differ (and bidi overrides can disguise what a value says)."""

_CONTROL_RE: Final = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
"""C0/C1 control characters except the whitespace ones (tab, LF, VT, FF, CR, NEL), which are collapsed."""

_RAW_SLACK: Final = 1024


def _clean(value: object, max_length: int) -> str | None:
    if not isinstance(value, str):
        raise NormalizationError("not_text")
    # Bound the work before doing any: a field may be padded, but not by megabytes.
    if len(value) > max_length * 4 + _RAW_SLACK:
        raise NormalizationError("too_long")
    if value.isascii():  # most values: NFKC leaves ASCII as it is and nothing invisible is ASCII
        if _CONTROL_RE.search(value):
            raise NormalizationError("control_characters")
        return _collapsed(value, max_length)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        invalid = True
    else:
        invalid = False
    if invalid:
        raise NormalizationError("invalid_encoding")
    if _CONTROL_RE.search(value):
        raise NormalizationError("control_characters")
    text = unicodedata.normalize("NFKC", _INVISIBLE_RE.sub("", value))
    # NFKC can surface new invisible characters (rare compatibility mappings); one more pass settles it.
    if _INVISIBLE_RE.search(text):
        text = unicodedata.normalize("NFKC", _INVISIBLE_RE.sub("", text))
    return _collapsed(text, max_length)


def _collapsed(text: str, max_length: int) -> str | None:
    text = " ".join(text.split())
    if not text:
        return None
    if len(text) > max_length:
        raise NormalizationError("too_long")
    return text


def clean_text(value: str, *, max_length: int = 512) -> str | None:
    """NFKC-normalize, drop invisible/bidi-control characters and collapse whitespace; ``None`` if blank.

    Everything else builds on this, so every normalizer shares one definition of "the same text":
    full-width digits, ligatures, non-breaking spaces and zero-width joiners no longer make equal values
    differ. NUL and other control characters are rejected rather than stripped (they signal a broken
    export, and silently dropping them could join two fields); lone surrogates — what decoding invalid
    UTF-8 with ``errors="surrogateescape"`` leaves behind — are rejected as ``invalid_encoding``.
    """
    return _clean(value, max_length)


def _require(value: str, max_length: int) -> str:
    text = _clean(value, max_length)
    if text is None:
        raise NormalizationError("empty")
    return text


_NOT_ASCII_ALNUM_RE: Final = re.compile(r"[^a-z0-9]")


def _fold(text: str) -> str:
    """Lower-case ASCII letters and digits only: diacritics folded, other scripts transliterated."""
    if text.isascii():  # most names: the same result without the per-character category look-ups
        return _NOT_ASCII_ALNUM_RE.sub("", text.lower())
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] in "LMN")
    return _NOT_ASCII_ALNUM_RE.sub("", str(anyascii(kept.casefold())).lower())


# --------------------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------------------

PlusAddressing = Literal["keep", "strip"]

_GMAIL_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})


@dataclass(frozen=True, slots=True)
class NormalizedEmail:
    """Three forms of one address, because storage and matching want different things.

    ``display`` is what we show and send to: the validated address with the local part's case as given.
    ``canonical`` is what we store and index: lower-cased, and tag-stripped/dot-folded only if the source
    policy says so. ``match_key`` always folds plus tags and Gmail dots, whatever the storage policy,
    because ``maria+shop@`` and ``maria@`` are one mailbox for the matcher.
    """

    display: str
    canonical: str
    match_key: str


def _strip_tag(local: str) -> str:
    base = local.split("+", 1)[0]
    # "+only@" has no base; "a.+b@" would leave a trailing dot and an invalid address.
    return base if base and not base.endswith(".") else local


def normalize_email(
    value: str, *, plus_addressing: PlusAddressing = "keep", gmail_dots: bool = False
) -> NormalizedEmail:
    """Validate the syntax of an email address (no DNS) and return its display/canonical/match forms.

    A display name (``Maria <maria@example.com>``) and a ``mailto:`` prefix are accepted and dropped; IDN
    domains come back in their Unicode form whether given as Unicode or punycode, so both spellings store
    the same. Anything email-validator rejects raises ``invalid_email``.
    """
    if plus_addressing not in ("keep", "strip"):
        raise ValueError("plus_addressing must be 'keep' or 'strip'")
    text = _require(value, 320)
    if text[:7].casefold() == "mailto:":
        text = text[7:].strip()
    try:
        info = validate_email(
            text,
            check_deliverability=False,
            allow_display_name=True,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_empty_local=False,
            strict=True,  # RFC 5321 limits: a local part over 64 octets is no deliverable mailbox
            globally_deliverable=True,
            test_environment=False,
        )
    except (EmailNotValidError, ValueError):  # library messages quote the address: never chain them
        info = None
    if info is None:
        raise NormalizationError("invalid_email")
    local = info.local_part
    domain = info.domain.lower()
    lowered = local.lower()

    key_local = _strip_tag(lowered)
    key_domain = domain
    if domain in _GMAIL_DOMAINS:
        key_local = key_local.replace(".", "") or key_local
        key_domain = "gmail.com"

    canon_local = lowered
    canon_domain = domain
    if plus_addressing == "strip":
        canon_local = _strip_tag(canon_local)
    if gmail_dots and domain in _GMAIL_DOMAINS:
        canon_local = canon_local.replace(".", "") or canon_local
        canon_domain = "gmail.com"
    return NormalizedEmail(
        display=f"{local}@{domain}",
        canonical=f"{canon_local}@{canon_domain}",
        match_key=f"{key_local}@{key_domain}",
    )


_PLAIN_EMAIL: Final = re.compile(
    r"(?P<local>[a-z0-9_+\-]+(?:\.[a-z0-9_+\-]+)*)@(?P<domain>(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})"
)
_SPECIAL_USE: Final = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def email_match_key(value: str) -> str:
    """The matching key of an email address — :attr:`NormalizedEmail.match_key` — with a fast path.

    Most addresses are plain lower-case ASCII; for those the full validation (IDN handling, display
    names, special-use domains …) cannot change the key, so it is computed directly. Anything else — upper
    case, Unicode, punycode labels, quoted parts, special-use domains, over-long parts — goes through
    :func:`normalize_email` and is validated in full. A test checks both paths agree.
    """
    match = _PLAIN_EMAIL.fullmatch(value.strip())
    if match is not None:
        local, domain = match["local"], match["domain"]
        labels = domain.split(".")
        if (
            len(local) <= 64
            and len(domain) <= 253
            and labels[-1] not in _SPECIAL_USE
            # "ab--…" labels are reserved for IDNA (xn--): email-validator decides those.
            and not any(label[2:4] == "--" for label in labels)
        ):
            key_local = _strip_tag(local)
            if domain in _GMAIL_DOMAINS:
                return f"{key_local.replace('.', '') or key_local}@gmail.com"
            return f"{key_local}@{domain}"
    return normalize_email(value).match_key


# --------------------------------------------------------------------------------------------------------
# Phone
# --------------------------------------------------------------------------------------------------------

_ASCENDING: Final = "01234567890123456789"
_DESCENDING: Final = "98765432109876543210"


def _filler_digits(digits: str) -> bool:
    if len(digits) < 6:
        return False
    return len(set(digits)) == 1 or len(set(digits[1:])) == 1 or digits in _ASCENDING or digits in _DESCENDING


def _nanp_fictional(national: str) -> bool:
    # 555-0100 … 555-0199 is reserved for fiction in every NANP area code.
    return len(national) == 10 and national[3:6] == "555" and national[6:8] == "01"


def _international_form(text: str) -> str | None:
    """``00 44 20…`` → ``+44 20…``: the ITU prefix works from most of the world but not every region's
    dialling rules (phonenumbers reads it as a national number under US/CA defaults)."""
    match = re.match(r"^\(?00\)?\s*(?=[1-9])", text)
    return "+" + text[match.end() :] if match else None


def _parsed_phones(text: str, region: str) -> Iterator[phonenumbers.PhoneNumber]:
    """The readings of a phone text that parse: as written, then with ``00`` read as ``+``."""
    candidates = [text]
    alt = _international_form(text)
    if alt is not None:
        candidates.append(alt)
    for candidate in candidates:
        try:
            yield phonenumbers.parse(candidate, region)
        except (phonenumbers.NumberParseException, ValueError, TypeError, IndexError):
            continue


def _parse_phone(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    for number in _parsed_phones(text, region):
        if phonenumbers.is_possible_number(number) and phonenumbers.is_valid_number(number):
            return number
    return None


def phone_is_placeholder(value: str) -> bool:
    """True when a phone value is filler a form or a legacy system put in place of a real number.

    Catches ``000-000-0000``, ``07777 777777``, ``1234567890``, a leading digit followed by one repeated
    digit, and the NANP fiction range (555-01XX). Some of these pass phonenumbers' validity check, and all
    of them would link unrelated people who share the same junk.
    """
    text = _clean(value, 64)
    if text is None:
        return False
    digits = "".join(str(unicodedata.digit(ch)) for ch in text if ch.isdecimal())
    alt = _international_form(text)
    if text.startswith("+") or alt is not None:
        try:
            number = phonenumbers.parse(alt or text, None)
        except (phonenumbers.NumberParseException, ValueError, TypeError, IndexError):
            number = None
        if number is not None:
            national = phonenumbers.national_significant_number(number)
            if _filler_digits(national):
                return True
            if number.country_code == 1 and _nanp_fictional(national):
                return True
    return _filler_digits(digits) or _filler_digits(digits.lstrip("0"))


def normalize_phone(value: str, *, default_region: str) -> str:
    """Parse a phone number in any national or international format and return it in E.164.

    ``default_region`` (ISO 3166 alpha-2, from the source mapping or the record's country) resolves
    national formats such as ``020 7946 0958`` or ``06 12 34 56 78``. ``+``/``00`` prefixes, ``(0)``
    trunk notation, ``tel:`` URIs and full-width digits are all accepted; extensions are dropped (E.164
    has none, and the matcher compares lines, not desks). Numbers that are not possible or not valid for
    their country, and placeholders (see :func:`phone_is_placeholder`), raise ``invalid_phone``.
    """
    text = _require(value, 64)
    number = _parse_phone(text, str(default_region).upper())
    if number is None:
        raise NormalizationError("invalid_phone")
    national = phonenumbers.national_significant_number(number)
    if _filler_digits(national) or (number.country_code == 1 and _nanp_fictional(national)):
        raise NormalizationError("invalid_phone")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def phone_match_key(value: str, *, default_region: str) -> str:
    """E.164 form of a phone number for *matching*: :func:`normalize_phone` without the validity check.

    Whether a number is assigned in its country's plan (phonenumbers' ``is_valid_number``, half the cost of
    parsing) does not change its E.164 form, so matching can skip it: for every number
    :func:`normalize_phone` accepts, both return the same string. Numbers that are merely possible still
    get a key; filler digits and fictional ranges still raise ``invalid_phone``.
    """
    text = _require(value, 64)
    for number in _parsed_phones(text, str(default_region).upper()):
        # Fully possible only: a number that could be dialled locally (no area code) is not a key.
        if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
            continue
        national = phonenumbers.national_significant_number(number)
        if _filler_digits(national) or (number.country_code == 1 and _nanp_fictional(national)):
            raise NormalizationError("invalid_phone")
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    raise NormalizationError("invalid_phone")


# --------------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------------


def _with_dots(words: Iterable[str]) -> frozenset[str]:
    return frozenset(w for word in words for w in (word, word + "."))


_HONORIFICS: Final = _with_dots(
    (
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "revd",
        "herr", "frau", "hr", "fr", "dipl.-ing", "dr.-ing",
        "sr", "sra", "srta", "dña", "doña", "d.ª",
        "mme", "mlle", "dhr", "mevr",
    )
)  # fmt: skip
"""Titles stripped from the front of a name. "Don" is left out on purpose: it is also a given name; "Fr"
and "Hr" are kept because as leading abbreviations they are titles far more often than names."""

_SUFFIXES: Final = _with_dots(("jr", "jnr", "sr", "snr", "ii", "iii", "iv", "phd", "ph.d", "md", "esq")) | {
    "jun.",
    "sen.",
}
"""Suffix tokens stripped from the end; "jun"/"sen" only with a dot, since Jun and Sen are also names."""

_GENERATIONAL: Final[dict[str, str]] = {
    "jr": "Jr",
    "jnr": "Jr",
    "jun": "Jr",
    "sr": "Sr",
    "snr": "Sr",
    "sen": "Sr",
    "ii": "II",
    "iii": "III",
    "iv": "IV",
}

_PARTICLES: Final = frozenset(
    {"van", "von", "der", "den", "de", "del", "della", "da", "das", "dos", "du", "di", "y", "zu", "ten",
     "ter", "bin", "ibn", "af", "av", "la", "las", "los", "le"}
)  # fmt: skip
"""Lower-case name particles, kept lower-case inside a name when case has to be repaired."""

_ARTICLES_AFTER_DE: Final = frozenset({"la", "las", "los", "le"})
"""Particles only when they follow "de" (``de la Cruz``): alone, "Le" and "La" are surnames."""

_SPANISH_GIVEN: Final = frozenset(
    {"jose", "maria", "luis", "carlos", "antonio", "manuel", "angel", "miguel", "javier", "ignacio",
     "francisco", "juan", "pablo", "pedro", "ramon", "alberto", "andres", "alfonso", "eduardo", "enrique",
     "fernando", "jesus", "jorge", "rafael", "ricardo", "alejandro", "daniel", "david", "sergio", "diego",
     "adrian", "alvaro", "mario", "isabel", "teresa", "pilar", "carmen", "elena", "luisa", "ana", "cristina",
     "mar", "rosa", "victoria", "eugenia", "josefa", "dolores", "mercedes", "fernanda", "paz", "sol", "rocio",
     "consuelo", "montserrat", "angeles", "luz", "belen", "guadalupe", "esperanza", "asuncion", "concepcion",
     "lourdes", "nieves", "rosario", "socorro", "soledad", "inmaculada"}
)  # fmt: skip
"""Common Spanish given names, used to tell ``José Luis Rodríguez`` (compound given name, one surname)
from ``José Rodríguez López`` (given name, two surnames)."""


def _token_key(token: str) -> str:
    return token.casefold().rstrip(",")


def _is_honorific(token: str) -> bool:
    return _token_key(token) in _HONORIFICS


def _is_suffix(token: str) -> bool:
    return _token_key(token) in _SUFFIXES


def _cap_simple(word: str) -> str:
    # "İ".lower() is "i" + combining dot above; in a repaired Turkish name that dot is noise (ÇELİK → Çelik).
    lowered = word.lower().replace("i\u0307", "i")
    if lowered.startswith("mc") and len(lowered) > 2 and lowered[2].isalpha():
        return "Mc" + lowered[2].title() + lowered[3:]
    # title(), not upper(): "ß".upper() is "SS", which would read as ALL CAPS on the next pass.
    return lowered[:1].title() + lowered[1:]


def _cap_piece(word: str) -> str:
    match = re.fullmatch(r"([^\W\d_])(['\u2019])(.+)", word)
    if match:  # O'Brien, D'Angelo
        return match.group(1).title() + match.group(2) + _cap_simple(match.group(3))
    return _cap_simple(word)


def _capitalize(token: str) -> str:
    return "-".join(_cap_piece(piece) for piece in token.split("-"))


def _is_all_upper(token: str) -> bool:
    cased = [ch for ch in token if ch.isupper() or ch.islower()]
    return len(cased) >= 2 and all(ch.isupper() for ch in cased)


def _fix_case(parts: list[list[str]]) -> list[list[str]]:
    """Repair case only where a system destroyed it (ALL CAPS tokens, or an all-lower name).

    Mixed case is the person's own spelling (``DeShawn``, ``McKenzie``, ``van der Berg``) and is kept.
    """
    tokens = [t for part in parts for t in part]
    # When no token shows deliberate case (every cased token is ALL CAPS or all lower), the whole name was
    # flattened by some system: "jean-pierre DUPONT" → "Jean-Pierre Dupont".
    all_lower = all(_is_all_upper(t) or not any(ch.isupper() for ch in t) for t in tokens)
    fixed: list[list[str]] = []
    position = 0
    for part in parts:
        out: list[str] = []
        for index, token in enumerate(part):
            if all_lower or _is_all_upper(token):
                key = token.casefold()
                prev = part[index - 1].casefold() if index else ""
                is_particle = key in _PARTICLES and (key not in _ARTICLES_AFTER_DE or prev == "de")
                inner = position > 0 and index < len(part) - 1
                token = key if is_particle and inner else _capitalize(token)
            out.append(token)
            position += 1
        fixed.append(out)
    return fixed


def _name_parts(text: str, *, repair_case: bool = True) -> tuple[list[list[str]], bool]:
    """Comma-separated parts of a name, honorifics and suffixes stripped, case repaired (unless
    ``repair_case`` is off: a matching key folds case anyway, and the repair was most of its cost).

    Returns the parts and whether an honorific was removed (``Mr. Smith`` names a family, not a person's
    given name). Affixes are stripped only while another token remains, except dotted ones (``Mr.`` on its
    own is not a name), so a surname that happens to be ``Herr`` survives in its own field.
    """
    parts = [part.split() for part in text.split(",")]
    parts = [p for p in parts if p]
    total = sum(len(p) for p in parts)
    had_title = False
    for part in parts:
        while part and _is_honorific(part[0]) and (total > 1 or part[0].endswith(".")):
            part.pop(0)
            total -= 1
            had_title = True
        while part and _is_suffix(part[-1]) and (total > 1 or part[-1].endswith(".")):
            part.pop()
            total -= 1
    parts = [p for p in parts if p]
    return (_fix_case(parts) if repair_case else parts), had_title


def normalize_name(value: str) -> str:
    """Display form of a person's name: cleaned, titles and suffixes removed, destroyed case repaired.

    ``MR JOHN O'BRIEN JR`` → ``John O'Brien``; ``LUDWIG VAN BEETHOVEN`` → ``Ludwig van Beethoven``;
    ``maría del carmen`` → ``María del Carmen``. Mixed case is left as the person wrote it. Works for
    first, last and full-name fields; a ``Surname, Given`` order is kept (see :func:`split_full_name`).
    Generational suffixes are dropped here — use :func:`generational_suffix` to keep "Jr" as evidence.
    """
    return _joined_name(value, repair_case=True)


def _joined_name(value: str, *, repair_case: bool) -> str:
    parts, _ = _name_parts(_require(value, 256), repair_case=repair_case)
    if not parts:
        raise NormalizationError("empty")
    return ", ".join(" ".join(part) for part in parts)


def generational_suffix(value: str) -> str | None:
    """``Jr``/``Sr``/``II``/``III``/``IV`` if the name ends with one, else ``None``.

    :func:`normalize_name` drops the suffix for display, but a junior shares name and address with a
    parent: the matcher should see this as disagreeing evidence rather than lose it.
    """
    text = _clean(value, 256)
    if text is None:
        return None
    tokens = text.replace(",", " ").split()
    if len(tokens) < 2:
        return None
    return _GENERATIONAL.get(_token_key(tokens[-1]).rstrip("."))


def _name_for_keys(value: str) -> str:
    """:func:`normalize_name` without its case repair, for keys that fold case anyway (the repair was
    most of the cost of a key). Raises like it."""
    return _joined_name(value, repair_case=False)


def name_match_key(value: str) -> str:
    """Matching key for a name: no titles/suffixes, casefolded, diacritics folded, only ``[a-z0-9]``.

    ``Dr. Müller`` → ``muller``; ``O'Brien-Smith`` → ``obriensmith``; ``Łódź`` → ``lodz``; other scripts
    are transliterated (``张伟`` → ``zhangwei``). Spaces, hyphens and apostrophes go, so ``Jean-Pierre``
    and ``Jean Pierre`` agree. Use :func:`name_match_keys` to also meet German transliterations.
    """
    key = _fold(_name_for_keys(value))
    if not key:
        raise NormalizationError("empty")
    return key


_TRANSLITERATIONS: Final = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "Ä": "Ae",
        "Ö": "Oe",
        "Ü": "Ue",
        "ø": "oe",
        "Ø": "Oe",
        "å": "aa",
        "Å": "Aa",
    }
)
"""German (and Danish/Norwegian) spellings without umlauts: Müller is written Mueller when there's no ü."""


def name_match_keys(value: str) -> set[str]:
    """All matching keys of a name: the folded key and the transliterated one (``{"muller", "mueller"}``).

    Two names may be the same when their key sets intersect: ``Müller`` meets both ``Muller`` and
    ``Mueller``, while ``Mueller`` is never folded back to ``Muller`` (that would also turn ``Samuel``
    into ``Saml``-like nonsense).
    """
    display = _name_for_keys(value)
    keys = {_fold(display), _fold(display.translate(_TRANSLITERATIONS))}
    keys.discard("")
    if not keys:
        raise NormalizationError("empty")
    return keys


@functools.cache
def _nickname_index() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for formal, nickname in nickname_pairs():
        formal_key, nick_key = _fold(formal), _fold(nickname)
        if formal_key and nick_key and formal_key != nick_key:
            index.setdefault(nick_key, set()).add(formal_key)
    return {key: frozenset(values) for key, values in index.items()}


def nickname_keys(first_name: str) -> set[str]:
    """Keys under which a given name may meet the same person's other given-name spellings.

    The set holds the name's own keys (see :func:`name_match_keys`), those of its first token (a middle
    name in the given-name field: ``José María`` also yields ``jose``), and the formal names each of them
    is a nickname of: ``Bill`` → ``{"bill", "william", …}``, ``Pepe`` → ``{"pepe", "jose"}``,
    ``Chema`` → ``{"chema", "josemaria"}``. Two given names are compatible when their sets intersect.
    For matching only — never to overwrite a stored first name.
    """
    display = _name_for_keys(first_name)
    bases = set(name_match_keys(display))
    first_token = re.split(r"[\s,\-]+", display, maxsplit=1)[0]
    if first_token and first_token != display:
        with contextlib.suppress(NormalizationError):
            bases |= name_match_keys(first_token)
    index = _nickname_index()
    keys = set(bases)
    for base in bases:
        keys |= index.get(base, frozenset())
    return keys


def _units(tokens: list[str]) -> list[list[str]]:
    """Group particles with the name that follows them: ``del Carmen``, ``van Beethoven``, ``de la Cruz``.

    The first and last tokens never count as particles (``Van Morrison``, ``Tran Le``)."""
    units: list[list[str]] = []
    pending: list[str] = []
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if 0 < index < last and token.casefold() in _PARTICLES:
            pending.append(token)
            continue
        units.append([*pending, token])
        pending = []
    return units


def _looks_hispanic(tokens: list[str]) -> bool:
    lowered = [t.casefold() for t in tokens]
    if any(ch in "ñáíóú" for t in lowered for ch in t):
        return True
    if any(t in {"del", "y"} for t in lowered):
        return True
    return any(_fold(t).endswith("ez") for t in lowered[1:])


def _name_or_none(part: str | None) -> str | None:
    if part is None:
        return None
    try:
        return normalize_name(part)
    except NormalizationError:
        return None


def split_full_name(value: str) -> tuple[str | None, str | None]:
    """Split a free-form full name into ``(given, family)``; see :func:`_split_full_name` for the rules.

    Each half is passed through :func:`normalize_name` once more, so both are exactly what storing them
    as first/last name would give (a title stranded mid-name, ``Maria Mr. Smith``, does not survive).
    """
    given, family = _split_full_name(value)
    given, family = _name_or_none(given), _name_or_none(family)
    if given is None and family is None:
        raise NormalizationError("empty")
    return given, family


def _split_full_name(value: str) -> tuple[str | None, str | None]:
    """Split a free-form full name into ``(given, family)``, both in :func:`normalize_name` display form.

    ``Garcia, Maria`` → ``("Maria", "Garcia")``; ``Mr. J. Smith`` → ``("J.", "Smith")``;
    ``Maria del Carmen García López`` → ``("Maria del Carmen", "García López")``; ``Ludwig van Beethoven``
    → ``("Ludwig", "van Beethoven")``. A single name is a given name unless a title came with it
    (``Mr. Smith`` → ``(None, "Smith")``). Hispanic names (accents, ``del``/``y``, ``-ez`` surnames) take
    two surnames when there are enough parts; other names put middle names in the given name, as most
    sources' given-name fields do.
    """
    text = _require(value, 256)
    parts, had_title = _name_parts(text)
    if not parts:
        raise NormalizationError("empty")
    if len(parts) >= 2:
        family = " ".join(parts[0])
        given = " ".join(t for part in parts[1:] for t in part)
        return given, family
    tokens = parts[0]
    units = _units(tokens)
    joined = [" ".join(unit) for unit in units]
    if len(units) == 1:
        return (None, joined[0]) if had_title else (joined[0], None)
    if len(units) == 2:
        return joined[0], joined[1]
    if _looks_hispanic(tokens):
        if len(units) == 3:
            head = _fold(units[1][-1])
            if head in _SPANISH_GIVEN:
                return " ".join(joined[:2]), joined[2]
            return joined[0], " ".join(joined[1:])
        return " ".join(joined[:-2]), " ".join(joined[-2:])
    return " ".join(joined[:-1]), joined[-1]


def phonetic_key(value: str) -> str:
    """Metaphone code of a name's match key, for blocking: ``Müller``/``Mueller`` → ``MLR``.

    Uses jellyfish's metaphone (jellyfish has no Double Metaphone) on the folded key, with repeated code
    letters collapsed so ``Schmidt`` and ``Schmitt`` share ``SXMT``. Raises ``empty`` when a name has no
    letters at all; names metaphone encodes as nothing (``Y``) fall back to their upper-cased letters.
    """
    letters = re.sub(r"[0-9]", "", name_match_key(value))
    if not letters:
        raise NormalizationError("empty")
    code = re.sub(r"(.)\1+", r"\1", str(jellyfish.metaphone(letters)).upper())
    # Metaphone encodes some short names as nothing ("Y", "Wy"): block those on their letters instead.
    return code or letters.upper()


# --------------------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddressParts:
    """An address line split into the parts that compare differently.

    ``street`` keeps the source's spelling (run :func:`normalize_street` on it to match); ``street_number``
    is compact upper case (``12B``, ``12-14``, ``12BIS``); ``unit`` is the flat/apartment/suite identifier
    without its designator (``Flat 3`` → ``3``, ``2º B`` → ``2 B``), since households in one building
    differ only there.
    """

    street_number: str | None
    street: str | None
    unit: str | None


_UNIT_RE: Final = re.compile(
    r"(?:^|(?<=[\s,]))"
    r"(?:flat|apartment|apt|unit|suite|ste|room|rm|wohnung|whg|appartement|app|apto|piso|puerta|pta|planta)"
    r"\.?\s*(?:no\.?\s*|n[º°]\s*)?"
    r"(?P<id>[0-9]+[º°ª]?\s?[a-z]?(?![\w])|[a-z](?![\w]))",
    re.IGNORECASE,
)
_HASH_UNIT_RE: Final = re.compile(r"(?:^|(?<=[\s,]))#\s*(?P<id>[0-9a-z]+(?:-[0-9a-z]+)?)", re.IGNORECASE)
_FLOOR_DOOR_RE: Final = re.compile(
    r"(?:^|(?<=[\s,]))(?P<id>[0-9]{1,2}\s*[º°ª](?:\s*(?:[a-z]{1,4}|[0-9]{1,2}[º°ª]?)(?![\w]))?)",
    re.IGNORECASE,
)
_NUMBER: Final = r"[0-9]+\s?[a-z]?(?:\s*[-/]\s*[0-9]+[a-z]?)?(?:\s*(?:bis|ter|quater)\b)?"
_GLUED_NUMBER: Final = r"[0-9]+[a-z]?(?:\s*[-/]\s*[0-9]+[a-z]?)?(?:\s*(?:bis|ter|quater)\b)?"
"""Number-first lines write a letter suffix glued (``12B Main St``); ``1 E Main St`` is East, not 1E."""
_LEADING_NUMBER_RE: Final = re.compile(
    rf"^(?P<num>{_GLUED_NUMBER})(?:\s*,\s*|\s+)(?P<rest>\S.*)$", re.IGNORECASE
)
_TRAILING_NUMBER_RE: Final = re.compile(
    rf"^(?P<rest>.*?\S)(?:\s*,\s*|\s+)(?:(?:n[º°o]|nr|no|núm|num|número)\.?\s*)?(?P<num>{_NUMBER})$",
    re.IGNORECASE,
)
_ONLY_NUMBER_RE: Final = re.compile(rf"^(?P<num>{_NUMBER})$", re.IGNORECASE)
_PO_BOX_RE: Final = re.compile(r"\b(?:p\.?\s?o\.?\s?box|postfach|apartado(?:\s+de\s+correos)?)\b", re.I)
_SIN_NUMERO_RE: Final = re.compile(r"(?:^|(?<=[\s,]))s/n(?![\w])", re.IGNORECASE)


def _tidy(text: str) -> str | None:
    text = re.sub(r"\s*,(?:\s*,)+", ",", text)
    text = " ".join(text.split()).strip(" ,;")
    return text or None


def _unit_id(raw: str) -> str:
    return " ".join(re.sub(r"[º°ª]", " ", raw).split()).upper()


_ORDINALS: Final = str.maketrans({"º": "°", "ª": "°"})
"""Spanish ordinal indicators (``2º B``, ``nº 3``): NFKC would turn them into the letters o/a and make
``1ª`` look like house number 1A, so they become a degree sign (which NFKC keeps) before cleaning."""


def _require_address(value: str) -> str:
    return _require(value.translate(_ORDINALS) if isinstance(value, str) else value, 512)


def parse_address_line(value: str) -> AddressParts:
    """Split an address line into street number, street and unit.

    Handles number-first (``12 Main St``, ``12 bis rue de la Paix``) and number-last (``Hauptstr. 5a``,
    ``C/ Mayor, nº 3``, ``Kerkstraat 12-14``) conventions, and pulls unit designators out wherever they
    are: ``Flat 3, 12 High Street``, ``12 Main St Apt 4B``, ``500 Oak Ave #12``, ``Calle Mayor 3, 2º B``.
    PO boxes keep their number in ``street``.
    """
    text = _require_address(value)
    units: list[str] = []

    def take(match: re.Match[str]) -> str:
        units.append(_unit_id(match.group("id")))
        return " "

    rest = _UNIT_RE.sub(take, text)
    rest = _HASH_UNIT_RE.sub(take, rest)
    rest = _FLOOR_DOOR_RE.sub(take, rest)
    rest = _SIN_NUMERO_RE.sub(" ", rest)
    street = _tidy(rest)
    number: str | None = None
    if street is not None and not _PO_BOX_RE.search(street):
        for pattern in (_ONLY_NUMBER_RE, _LEADING_NUMBER_RE, _TRAILING_NUMBER_RE):
            match = pattern.match(street)
            if match:
                number = re.sub(r"\s+", "", match.group("num")).upper()
                street = _tidy(match.groupdict().get("rest") or "")
                break
    unit = " ".join(u for u in units if u) or None
    if street is None and number is None and unit is None:
        raise NormalizationError("empty")
    return AddressParts(street_number=number, street=street, unit=unit)


_STREET_ANY: Final[dict[str, str]] = {
    "str": "strasse",
    "blvd": "boulevard",
    "bd": "boulevard",
    "bvd": "boulevard",
    "hwy": "highway",
    "pkwy": "parkway",
    "ln": "lane",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "avda": "avenida",
    "avd": "avenida",
    "ctra": "carretera",
    "pza": "plaza",
    "plza": "plaza",
    "pso": "paseo",
    "gdns": "gardens",
    "sq": "square",
    "cres": "crescent",
    "tce": "terrace",
    "ct": "court",
    "pl": "place",
    "st": "street",
    "dr": "drive",
    "cl": "close",
    "rte": "route",
    "imp": "impasse",
    "fbg": "faubourg",
    "pln": "plein",
}
"""Abbreviation → word, for tokens after the first word of the street (street-type position in English)."""

_STREET_LEADING: Final[dict[str, str]] = {
    "st": "saint",
    "mt": "mount",
    "av": "avenida",
    "pl": "plaza",
    "cl": "calle",
    "cll": "calle",
}
"""Overrides for the first word, where Romance street types stand (``Av. de la Paz``, ``C/ Mayor``) and
``St`` means Saint (``St John's Road``)."""

_STREET_BY_COUNTRY: Final[dict[str, dict[str, str]]] = {
    "NL": {"str": "straat", "ln": "laan", "pln": "plein"},
    "BE": {"str": "straat", "ln": "laan", "av": "avenue", "pl": "place"},
    "DE": {"pl": "platz"},
    "AT": {"pl": "platz"},
    "CH": {"pl": "platz"},
    "FR": {"av": "avenue", "pl": "place", "r": "rue", "ch": "chemin", "all": "allee"},
    "LU": {"av": "avenue", "pl": "place", "r": "rue"},
}
"""Country-specific readings: Dutch ``Kerkstr.`` is a straat, French ``Av.`` an avenue."""

_NUMBER_WORDS: Final = frozenset({"no", "nr", "n", "num", "numero", "nro"})


def normalize_street(value: str, country: str | None = None) -> str:
    """Match form of a street or address line: folded, lower case, abbreviations expanded.

    ``12 Main St.`` → ``12 main street``; ``Hauptstr. 5`` and ``Hauptstraße 5`` → ``hauptstrasse 5``;
    ``C/ Mayor, nº 3`` → ``calle mayor 3``; ``Av. de la Constitución`` → ``avenida de la constitucion``;
    ``St John's Rd`` → ``saint johns road``. ``country`` (alpha-2) picks the local reading of ambiguous
    abbreviations (Dutch ``str.`` → ``straat``, French ``av.`` → ``avenue``). For matching only: the
    stored line keeps the source's spelling.
    """
    text = _require_address(value).casefold()
    code = _country_code_or_none(country)
    local = _STREET_BY_COUNTRY.get(code or "", {})
    text = re.sub(r"(?:^|(?<=[\s,]))c/\s*", "calle ", text)  # "C/Mayor" → "calle mayor"
    text = re.sub(r"(?:^|(?<=[\s,]))s/n(?![\w])", " ", text)  # sin número
    text = re.sub(r"[º°ª]", " ", text)
    strasse = local.get("str", "strasse")
    text = _fold_keep_spaces(text)
    kept: list[str] = []
    for token in reversed(text.split()):  # "nº 3", "Nr. 5": the number marker goes, the number stays
        if token in _NUMBER_WORDS and kept and kept[-1][:1].isdigit():
            continue
        kept.append(token)
    tokens = kept[::-1]
    words = [i for i, t in enumerate(tokens) if not t.isdigit()]
    first_word = words[0] if len(words) > 1 else -1
    out: list[str] = []
    for index, token in enumerate(tokens):
        leading = _STREET_LEADING.get(token) if index == first_word else None
        token = local.get(token) or leading or _STREET_ANY.get(token, token)
        if len(token) > 3 and token.endswith("str") and token[-4].isalpha():
            token = token[:-3] + strasse  # glued German/Dutch abbreviation: Hauptstr., Karl-Marx-Str.
        out.append(token)
    result = " ".join(out)
    if not result:
        raise NormalizationError("empty")
    return result


def _fold_keep_spaces(text: str) -> str:
    """Like :func:`_fold` but word boundaries survive: punctuation and symbols become spaces, and a
    hyphenated compound (``Karl-Marx-Straße``) stays one word."""
    text = re.sub(r"(?<=[^\W\d_])[-'\u2019](?=[^\W\d_])", "", text)
    kept = "".join(ch if unicodedata.category(ch)[0] in "LMN" else " " for ch in text)
    return re.sub(r"[^a-z0-9]+", " ", str(anyascii(kept)).lower()).strip()


# --------------------------------------------------------------------------------------------------------
# Postcodes and countries
# --------------------------------------------------------------------------------------------------------

_DIGIT_POSTCODES: Final[dict[str, tuple[int, int, str]]] = {
    # country: (length, fewest digits left after a spreadsheet ate leading zeros, validating regex)
    "US": (5, 3, r"[0-9]{5}"),
    "DE": (5, 4, r"(?!00)[0-9]{5}"),
    "FR": (5, 4, r"(?!00)[0-9]{5}"),
    "ES": (5, 4, r"(?:0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3}"),
    "IT": (5, 3, r"[0-9]{5}"),
    "FI": (5, 3, r"[0-9]{5}"),
    "MX": (5, 4, r"[0-9]{5}"),
    "AT": (4, 4, r"[1-9][0-9]{3}"),
    "CH": (4, 4, r"[1-9][0-9]{3}"),
    "BE": (4, 4, r"[1-9][0-9]{3}"),
    "LU": (4, 4, r"[0-9]{4}"),
    "DK": (4, 4, r"[1-9][0-9]{3}"),
    "NO": (4, 3, r"[0-9]{4}"),
    "AU": (4, 3, r"[0-9]{4}"),
    "NZ": (4, 3, r"[0-9]{4}"),
    "IN": (6, 6, r"[1-9][0-9]{5}"),
}
"""Countries whose postcodes are plain digits: zero-padded back to length, then validated."""

_SPLIT_POSTCODES: Final[dict[str, tuple[str, int, str]]] = {
    # country: (validating regex on the compact form, split position, separator)
    "GB": (r"(?:[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][ABD-HJLNP-UW-Z]{2}|GIR0AA)", -3, " "),
    "NL": (r"[1-9][0-9]{3}[A-Z]{2}", 4, " "),
    "CA": (r"[ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z][0-9][ABCEGHJ-NPRSTV-Z][0-9]", 3, " "),
    "IE": (r"(?:[AC-FHKNPRTV-Y][0-9]{2}|D6W)[0-9AC-FHKNPRTV-Y]{4}", 3, " "),
    "SE": (r"[1-9][0-9]{4}", 3, " "),
    "PL": (r"[0-9]{5}", 2, "-"),
    "PT": (r"[1-9][0-9]{6}", 4, "-"),
    "BR": (r"[0-9]{8}", 5, "-"),
    "JP": (r"[0-9]{7}", 3, "-"),
}
"""Countries with a fixed internal space or dash: validated compact, then re-spaced their way."""


def _country_code_or_none(country: str | None) -> str | None:
    if country is None:
        return None
    try:
        return normalize_country(country)
    except NormalizationError:
        return None


def _us_zip(text: str) -> str:
    match = re.fullmatch(r"(?:[A-Z]{2}\s*)?([0-9]{3,5})(?:\s*-\s*([0-9]{4}))?", text)
    if match:
        zip5 = match.group(1).zfill(5)
        return f"{zip5}-{match.group(2)}" if match.group(2) else zip5
    match = re.fullmatch(r"(?:[A-Z]{2}\s*)?([0-9]{8,9})", text)
    if match:
        digits = match.group(1).zfill(9)
        return f"{digits[:5]}-{digits[5:]}"
    raise NormalizationError("invalid_postcode")


def normalize_postcode(value: str, country: str | None) -> str:
    """Canonical postcode for a country: upper case, the country's own spacing, lost zeros restored.

    Spreadsheets turn ``02134`` into ``2134``; for countries whose codes are plain digits (US, DE, ES, FR,
    IT, …) the zeros are put back and the result validated. GB/NL/CA/IE/SE/PL/PT/BR/JP get their internal
    space or dash (``sw1a1aa`` → ``SW1A 1AA``, ``1234ab`` → ``1234 AB``). A country prefix or US state
    before the digits (``D-10115``, ``MA 02134``) is dropped. Unknown or missing country: upper-case
    letters and digits only. Invalid for a known country raises ``invalid_postcode``.
    """
    text = _require(value, 32).upper()
    code = _country_code_or_none(country)
    if code == "US":
        return _us_zip(text)
    if code in _DIGIT_POSTCODES:
        length, fewest, pattern = _DIGIT_POSTCODES[code]
        match = re.fullmatch(r"(?:[A-Z]{1,3}\s*-?\s*)?([0-9][0-9 ]*)", text)
        digits = match.group(1).replace(" ", "") if match else ""
        if not digits or not fewest <= len(digits) <= length:
            raise NormalizationError("invalid_postcode")
        digits = digits.zfill(length)
        if not re.fullmatch(pattern, digits):
            raise NormalizationError("invalid_postcode")
        return digits
    compact = re.sub(r"[^0-9A-Z]", "", text)
    if code in _SPLIT_POSTCODES:
        pattern, split, separator = _SPLIT_POSTCODES[code]
        if code in {"SE", "PL", "PT", "BR", "JP"} and re.fullmatch(r"[A-Z]{1,2}[0-9]+", compact):
            compact = re.sub(r"^[A-Z]+", "", compact)  # "SE-123 45", "PL-00-950"
        if not re.fullmatch(pattern, compact):
            raise NormalizationError("invalid_postcode")
        return compact[:split] + separator + compact[split:]
    if not compact:
        raise NormalizationError("empty")
    if len(compact) > 12:
        raise NormalizationError("invalid_postcode")
    return compact


_COUNTRY_ALIASES: Final[dict[str, str]] = {
    "uk": "GB",
    "greatbritain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northernireland": "GB",
    "usa": "US",
    "unitedstatesofamerica": "US",
    "america": "US",
    "eeuu": "US",
    "eua": "US",
    "holland": "NL",
    "russia": "RU",
    "turkey": "TR",
    "vatican": "VA",
    "ivorycoast": "CI",
    "macedonia": "MK",
    "swaziland": "SZ",
    "burma": "MM",
    "capeverde": "CV",
    "czechia": "CZ",
    "el": "GR",
}
"""Everyday names and codes that ISO 3166 itself does not list (``UK``, ``England``, ``Holland``, EU "EL")."""

_COUNTRY_LANGUAGES: Final = ("de", "es", "fr", "nl", "it", "pt", "pl", "sv", "da")


def _country_key(text: str) -> str:
    key = _fold(text)
    return key[3:] if key.startswith("the") and len(key) > 6 else key


@functools.cache
def _country_index() -> dict[str, str]:
    index: dict[str, str] = {}
    names: list[tuple[str, str]] = []
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if isinstance(name, str):
                names.append((name, country.alpha_2))
    for name, code in names:
        index.setdefault(_country_key(name), code)
    for language in _COUNTRY_LANGUAGES:
        translation = gettext.translation(
            "iso3166-1", pycountry.LOCALES_DIR, languages=[language], fallback=True
        )
        for name, code in names:
            index.setdefault(_country_key(translation.gettext(name)), code)
    index.update(_COUNTRY_ALIASES)
    index.pop("", None)
    return index


def normalize_country(value: str) -> str:
    """ISO 3166-1 alpha-2 code from an alpha-2 or alpha-3 code or a country name.

    Names are matched folded (case, accents, punctuation ignored) against pycountry's English names and
    their German, Spanish, French, Dutch, Italian, Portuguese, Polish, Swedish and Danish translations,
    plus everyday aliases (``UK``, ``England``, ``Holland``, ``EE.UU.``): ``Deutschland``, ``España``,
    ``Allemagne``, ``DEU`` and ``de`` all give ``DE``. Unrecognised values raise ``unknown_country``.
    """
    text = _require(value, 128)
    compact = re.sub(r"[\s.]", "", text)
    if compact.isascii() and compact.isalpha():
        upper = compact.upper()
        alias = _COUNTRY_ALIASES.get(compact.lower())
        if len(upper) == 2:
            if alias:
                return alias
            found = pycountry.countries.get(alpha_2=upper)
            if found is not None:
                return str(found.alpha_2)
        elif len(upper) == 3:
            found = pycountry.countries.get(alpha_3=upper)
            if found is not None:
                return str(found.alpha_2)
    code = _country_index().get(_country_key(text))
    if code is None:
        raise NormalizationError("unknown_country")
    return code


# --------------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------------

PLACEHOLDER_DATES: Final = frozenset(
    {date(1900, 1, 1), date(1901, 1, 1), date(1970, 1, 1), date(1, 1, 1), date(9999, 12, 31)}
)
"""Dates legacy systems write for "unknown". 1970-01-01 is a real birthday for some people, but in source
data it is overwhelmingly a Unix epoch default, and a wrong shared birthday links strangers."""

MAX_AGE_YEARS: Final = 120

_STRUCTURE_ERRORS: Final = ("does not match format", "unconverted data remains")
_FORMAT_ERRORS: Final = ("bad directive", "stray %")


_ISO_DATE_RE: Final = re.compile(r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])")
"""The shapes strptime's %Y-%m-%d matches whose only possible failure is the calendar's (a 30 February)."""


def _parse_date(value: str, formats: Sequence[str]) -> tuple[date, str]:
    if isinstance(formats, str) or not formats:
        raise ValueError("formats must be a non-empty sequence of strptime formats")
    text = _require(value, 64)
    impossible = False
    bad_format = False
    for fmt in formats:
        if fmt == "%Y-%m-%d" and _ISO_DATE_RE.fullmatch(text):
            # strptime's answer for this shape, without its locale look-up and regex on every call.
            try:
                return date.fromisoformat(text), fmt
            except ValueError:
                impossible = True  # e.g. 2023-02-29: the shape matched, the calendar said no
                continue
        try:
            return datetime.strptime(text, fmt).date(), fmt
        except ValueError as exc:
            message = str(exc)
            if any(marker in message for marker in _FORMAT_ERRORS):
                bad_format = True
            elif not any(marker in message for marker in _STRUCTURE_ERRORS):
                impossible = True  # the shape matched; the calendar said no (31/02, 29/02/2023)
        except (OverflowError, TypeError):
            continue
    if bad_format and not impossible:
        raise ValueError("a declared date format is not a valid strptime format")
    raise NormalizationError("impossible_date" if impossible else "unparseable_date")


def parse_date(value: str, formats: Sequence[str]) -> date:
    """Parse a date with the source's declared ``strptime`` formats, tried in order.

    Formats are declared, never guessed: ``03/04/1985`` is March in one source and April in another, and
    only the source mapping knows which. A value whose shape matches but names no real day (``31/02``)
    raises ``impossible_date``; one that matches no format raises ``unparseable_date``. A malformed
    *format* is a mapping bug and raises a plain ``ValueError``.
    """
    return _parse_date(value, formats)[0]


def parse_date_of_birth(value: str, formats: Sequence[str], *, today: date) -> date:
    """Parse a date of birth and reject what cannot be one.

    Placeholders (:data:`PLACEHOLDER_DATES`) raise ``placeholder_date``; dates after ``today`` or more than
    :data:`MAX_AGE_YEARS` years before it raise ``implausible_date``. A two-digit year (``%y``) that lands
    in the future is read as last century (``01/02/35`` → 1935), which is what a birth date means.
    ``today`` is passed in so the function stays pure and testable.
    """
    parsed, fmt = _parse_date(value, formats)
    if parsed in PLACEHOLDER_DATES:
        raise NormalizationError("placeholder_date")
    if parsed > today and "%y" in fmt:
        try:
            parsed = parsed.replace(year=parsed.year - 100)
        except ValueError:  # 29 February of a year that was not leap a century earlier
            impossible = True
        else:
            impossible = False
        if impossible:
            raise NormalizationError("impossible_date")
    if parsed > today:
        raise NormalizationError("implausible_date")
    age = today.year - parsed.year - ((today.month, today.day) < (parsed.month, parsed.day))
    if age > MAX_AGE_YEARS:
        raise NormalizationError("implausible_date")
    return parsed


def day_month_swapped(a: date, b: date) -> bool:
    """True when two different dates are the same date with day and month exchanged (3 Apr ↔ 4 Mar).

    A classic data-entry and locale-format error: the matcher treats it as weak agreement rather than a
    contradiction.
    """
    return a != b and a.year == b.year and a.month == b.day and a.day == b.month


# --------------------------------------------------------------------------------------------------------
# National identifiers
# --------------------------------------------------------------------------------------------------------

_KNOWN_JUNK_IDS: Final[dict[str, frozenset[str]]] = {
    "US": frozenset({"078051120", "219099999", "123456789", "987654321"}),
}
"""Identifiers printed on sample cards or in advertisements and since typed into forms by thousands."""


def normalize_national_id(value: str, country: str | None) -> str:
    """Compact form of a national identifier: upper-case ASCII letters and digits only.

    Spaces, dashes, dots and slashes go (``123-45-6789``, ``12.345.678-Z``). No checksum validation —
    formats differ per country and a wrong check digit is still evidence worth matching on — but obvious
    junk (one repeated character, a digit run like ``123456789``, famous sample numbers) raises
    ``invalid_national_id``, because shared junk would link strangers on the strongest identifier.
    """
    text = _require(value, 64).upper()
    compact = re.sub(r"[\s\-./]", "", text)
    if not re.fullmatch(r"[0-9A-Z]{4,32}", compact):
        raise NormalizationError("invalid_national_id")
    digits = re.sub(r"[^0-9]", "", compact)
    if len(set(compact)) == 1 or (len(digits) >= 6 and _filler_digits(digits)):
        raise NormalizationError("invalid_national_id")
    code = _country_code_or_none(country)
    if code and compact in _KNOWN_JUNK_IDS.get(code, frozenset()):
        raise NormalizationError("invalid_national_id")
    return compact
