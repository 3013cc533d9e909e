"""The rules of a field, in one place: lengths, normalisation, which characters are allowed.

Models take their column lengths from here, request schemas their types, and the Supabase
integration the same email rules, so a rule cannot drift between the three.

Each text type states its rule in the OpenAPI schema too (`maxLength`, `pattern`): what the
schema allows is exactly what the API accepts.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

import idna
from pydantic import (
    AfterValidator,
    AwareDatetime,
    EmailStr,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
)

EMAIL_MAX_LENGTH = 320
FULL_NAME_MAX_LENGTH = 255
TITLE_MAX_LENGTH = 200
STRING_MAX_LENGTH = 255  # a short single-line value (the default for a generated `str` field)
TEXT_MAX_LENGTH = 20_000  # multi-line text (a post's body, a generated `text` field)
# A whole number fits a 32-bit column (PostgreSQL `integer`, what `Mapped[int]` maps to).
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# Integer primary keys are 32-bit on PostgreSQL: larger ids cannot exist, so never query them
# (path and query parameters, token subjects).
MAX_INT_ID = INT32_MAX

# C0 controls, DEL and C1 controls. PostgreSQL refuses NUL in text; newlines and terminal escapes
# have no place in a name or an address. (Lone UTF-16 surrogates are refused by pydantic itself.)
CONTROL_CHARACTERS = r"\x00-\x1F\x7F-\x9F"
# Multi-line text may hold tabs and line breaks (\t \n \r), no other control character.
_MULTILINE_FORBIDDEN = r"\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F"

# Whitespace as JSON Schema's `\s` (ECMA-262) means it, spelt out: Python's `\s` and
# `str.strip()` leave out U+FEFF, so a name of only U+FEFF was accepted here and refused by the
# schema. (The C0/C1 controls Python adds are refused anyway.) `\uXXXX` reads the same in both.
WHITESPACE_CHARACTERS = " \t\n\v\f\r\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)
_WHITESPACE_CLASS = "".join(f"\\u{ord(character):04x}" for character in WHITESPACE_CHARACTERS)

# Not in one line of text, besides control characters: line and paragraph separators (line
# breaks), and bidirectional controls (embeddings, overrides, isolates), which reorder what is
# shown around them: "invoice\u202egnp.exe" displays as "invoiceexe.png".
NOT_IN_ONE_LINE = CONTROL_CHARACTERS + r"\u2028\u2029\u202a-\u202e\u2066-\u2069"
_NOT_IN_ONE_LINE = re.compile(f"[{NOT_IN_ONE_LINE}]")
# Characters that show nothing (zero-width space, non-joiner and joiner, word joiner; U+FEFF is
# in the whitespace above): a text of only these and whitespace is blank.
INVISIBLE_CHARACTERS = "\u200b\u200c\u200d\u2060"
_BLANK_CLASS = _WHITESPACE_CLASS + r"\u200b-\u200d\u2060"

# One line, none of the characters above, at least one that is neither whitespace nor invisible.
SINGLE_LINE_PATTERN = (
    f"^[^{NOT_IN_ONE_LINE}]*[^{_BLANK_CLASS}{NOT_IN_ONE_LINE}][^{NOT_IN_ONE_LINE}]*$"
)
MULTILINE_PATTERN = f"^[^{_MULTILINE_FORBIDDEN}]*$"
_MULTILINE_FORBIDDEN_RE = re.compile(f"[{_MULTILINE_FORBIDDEN}]")


def canonical_email(email: str) -> str:
    """The one form an address is stored and compared in, wherever it comes from (the API, the
    CLI, Supabase's exchange, webhook and sync): lower-cased, the domain as IDNA ASCII
    (punycode), so `boss@xn--80ak6aa92e.com` and `boss@аррӏе.com` are one address, one account.

    A non-ASCII domain is mapped and encoded as UTS 46 and IDNA 2008 say (the `idna` package,
    as email-validator, which checks the API's addresses, does); an ASCII domain is already the
    name DNS looks up, only its case is folded. Nothing else is repaired: an address with
    surrounding whitespace or control characters is refused, not trimmed into someone else's.
    ValueError when the domain has no IDNA ASCII form (`☃.com`)."""
    local, at, domain = email.rpartition("@")
    if not at or not local:
        raise ValueError("not an email address")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"the domain has no IDNA ASCII form: {exc}") from None
    return f"{local.lower()}@{domain.lower()}"


def single_line(text: str) -> str:
    """The rule of `SINGLE_LINE_PATTERN`, with readable errors; the value trimmed. Every
    one-line field has it: `full_name`, `title`, a generated `str`."""
    if _NOT_IN_ONE_LINE.search(text):
        raise ValueError(
            "must be a single line without control characters, line separators or "
            "bidirectional controls"
        )
    if not text.strip(WHITESPACE_CHARACTERS + INVISIBLE_CHARACTERS):
        raise ValueError("must not be blank")
    return text.strip()


def to_single_line(text: str, max_length: int) -> str | None:
    """Text from elsewhere (a Supabase user's metadata, which the user writes) made to pass
    `single_line`: every character Python does not call printable dropped (controls,
    separators, bidirectional controls, invisible characters, whitespace but the space),
    trimmed, cut at `max_length`. None when nothing is left."""
    kept = "".join(character for character in text if character.isprintable())
    return kept.strip()[:max_length].rstrip() or None


def multiline(text: str) -> str:
    """The rule of `MULTILINE_PATTERN`, with a readable error."""
    if _MULTILINE_FORBIDDEN_RE.search(text):
        raise ValueError("must not contain control characters other than tabs and line breaks")
    return text


def in_utc(moment: datetime) -> datetime:
    """The same instant in UTC: stored values are compared and ordered as UTC on every backend
    (SQLite keeps the wall-clock time and drops the offset)."""
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("out of range once converted to UTC") from exc


# Each text type: its length, its pattern for the OpenAPI schema, the validator that applies it.
SINGLE_LINE = {"pattern": SINGLE_LINE_PATTERN}
MULTILINE = {"pattern": MULTILINE_PATTERN}

FullName = Annotated[
    str,
    Field(max_length=FULL_NAME_MAX_LENGTH, json_schema_extra=SINGLE_LINE),
    AfterValidator(single_line),
]
Title = Annotated[
    str,
    Field(max_length=TITLE_MAX_LENGTH, json_schema_extra=SINGLE_LINE),
    AfterValidator(single_line),
]
ShortText = Annotated[
    str,
    Field(max_length=STRING_MAX_LENGTH, json_schema_extra=SINGLE_LINE),
    AfterValidator(single_line),
]
LongText = Annotated[
    str, Field(max_length=TEXT_MAX_LENGTH, json_schema_extra=MULTILINE), AfterValidator(multiline)
]
Email = Annotated[EmailStr, Field(max_length=EMAIL_MAX_LENGTH), AfterValidator(canonical_email)]
# `true`/`false` only: the schema says boolean, so 0, "yes" or "off" are refused.
Flag = StrictBool
# The generated resources' number and time types (`manage.py new-resource`). Strict, like `Flag`:
# the schema says integer or number, so "5" and `true` are refused.
WholeNumber = Annotated[StrictInt, Field(ge=INT32_MIN, le=INT32_MAX)]
# A finite number: JSON has no NaN or infinity, and a huge literal (1e400) is not a number here.
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
# A date and time with its offset (a naive one is ambiguous: refused), kept in UTC.
Timestamp = Annotated[AwareDatetime, AfterValidator(in_utc)]
