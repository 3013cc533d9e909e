"""What each `--field name:type` becomes: a column, a request type from `app/fields.py`, a
response type, and the values the generated tests send (valid, changed, refused).

Values are Python source text, pasted into the generated tests as they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldType:
    python_type: str  # of the `Mapped[...]` column and of the response field
    column: str  # the arguments of `mapped_column(...)`
    sqlalchemy_names: tuple[str, ...]  # imported from sqlalchemy by the model
    model_names: tuple[tuple[str, str], ...]  # (module, name) imported by the model
    request_type: str  # from app/fields.py
    create_default: str | None  # the create schema's default; None: required
    sample: str  # a valid value, as the request sends it
    sample_response: str  # the same value, as the response gives it back
    sample_model: str  # the same value, as the model stores it (tests insert rows directly)
    changed: str  # another valid value (a PATCH)
    changed_response: str
    refused: tuple[str, ...]  # values answered with 422


STR = FieldType(
    python_type="str",
    column="String(STRING_MAX_LENGTH)",
    sqlalchemy_names=("String",),
    model_names=(("app.fields", "STRING_MAX_LENGTH"),),
    request_type="ShortText",
    create_default=None,
    sample='"  Hello  "',
    sample_response='"Hello"',  # trimmed
    sample_model='"Hello"',
    changed='"Changed"',
    changed_response='"Changed"',
    refused=(
        '""',
        '"   "',
        '"\\u200b"',  # only an invisible character: blank
        '"x" * 256',
        '"two\\nlines"',
        '"two\\u2028lines"',
        '"invoice\\u202egnp.exe"',  # a right-to-left override
        '"bell\\x07"',
        "42",
    ),
)
TEXT = FieldType(
    python_type="str",
    column='Text, default=""',
    sqlalchemy_names=("Text",),
    model_names=(),
    request_type="LongText",
    create_default='""',
    sample='"Line one\\nLine two\\twith a tab"',
    sample_response='"Line one\\nLine two\\twith a tab"',
    sample_model='"Some text"',
    changed='"New text"',
    changed_response='"New text"',
    refused=('"x" * 20_001', '"nul\\x00"', '"escape\\x1b[31m"', "42"),
)
INT = FieldType(
    python_type="int",
    column="Integer",
    sqlalchemy_names=("Integer",),
    model_names=(),
    request_type="WholeNumber",
    create_default=None,
    sample="-42",
    sample_response="-42",
    sample_model="7",
    changed="2**31 - 1",
    changed_response="2**31 - 1",
    refused=("2**31", "-(2**31) - 1", '"5"', "1.5", "True"),
)
FLOAT = FieldType(
    python_type="float",
    column="Float",
    sqlalchemy_names=("Float",),
    model_names=(),
    request_type="Number",
    create_default=None,
    sample="1.5",
    sample_response="1.5",
    sample_model="0.25",
    changed="-3",
    changed_response="-3.0",
    refused=('"1.5"', "True"),
)
BOOL = FieldType(
    python_type="bool",
    column="Boolean",
    sqlalchemy_names=("Boolean",),
    model_names=(),
    request_type="Flag",
    create_default=None,
    sample="True",
    sample_response="True",
    sample_model="True",
    changed="False",
    changed_response="False",
    refused=('"yes"', "1", "0"),
)
DATETIME = FieldType(
    python_type="datetime",
    column="UTCDateTime()",
    sqlalchemy_names=(),
    model_names=(("datetime", "datetime"), ("app.db.base", "UTCDateTime")),
    request_type="Timestamp",
    create_default=None,
    sample='"2030-01-02T05:04:05+02:00"',
    sample_response='"2030-01-02T03:04:05Z"',  # kept in UTC
    sample_model="datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)",
    changed='"2031-06-07T08:09:10Z"',
    changed_response='"2031-06-07T08:09:10Z"',
    refused=('"2030-01-02T03:04:05"', '"not a date"', "True"),
)

FIELD_TYPES: dict[str, FieldType] = {
    "str": STR,
    "text": TEXT,
    "int": INT,
    "float": FLOAT,
    "bool": BOOL,
    "datetime": DATETIME,
}
