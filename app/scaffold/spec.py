"""The resource `manage.py new-resource` is asked for, checked before anything is written.

A name is refused when it is not snake_case, is a Python keyword or builtin, or would clash
with what the project already has (a resource, a table, a module, a name the generated code
uses); a field when its spec is not `name:type` with a known type, or its name is taken by
the model or the schemas. Each refusal is a `ScaffoldError` whose message is one line.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from app.db.base import Base, CRUDMixin, TimestampMixin
from app.scaffold.field_types import FIELD_TYPES, FieldType

# Matched whole (`fullmatch`): with `match` and a closing `$`, "gadget\n" passed, and its newline
# ended up in file names and in the lines added to app/router.py.
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
# Index and constraint names are built from the table name; PostgreSQL cuts names at 63 bytes.
MAX_NAME_LENGTH = 30
DEFAULT_FIELDS = ("name:str",)

# Every resource has these; the generated model and schemas define them.
OWN_COLUMNS = frozenset({"id", "owner_id", "created_at", "updated_at"})
# Names the generated modules import, define or use as variables: the resource's name (a module
# name in app/router.py, a variable in its routes and services) must not shadow them.
GENERATED_CODE_NAMES = frozenset(
    {
        "annotations",
        "any",
        "api_v1_prefix",
        "app",
        "base",
        "changes",
        "cls",
        "data",
        "datetime",
        "depends",
        "fastapi",
        "httpx",
        "include_routers",
        "index",
        "limit",
        "mapped",
        "mapped_column",
        "offset",
        "optional_not_null",
        "owner",
        "page",
        "paginate",
        "path",
        "pytest",
        "query",
        "response",
        "responses",
        "router",
        "routers",
        "schema",
        "select",
        "self",
        "session",
        "statement",
        "status",
        "text",
        "timedelta",
        "timezone",
        "user",
    }
)

# A field is a class attribute: it must not shadow a name the classes' annotations use.
ANNOTATION_NAMES = frozenset({"datetime"})


class ScaffoldError(Exception):
    """A refusal: the message is one line, nothing has been written."""


@dataclass(frozen=True)
class Field:
    name: str
    type_name: str

    @property
    def type(self) -> FieldType:
        return FIELD_TYPES[self.type_name]


@dataclass(frozen=True)
class Resource:
    name: str  # singular, snake_case: module names (`app/models/comment.py`)
    fields: tuple[Field, ...]

    @property
    def plural(self) -> str:
        """The table and the path (`/api/v1/comments/`)."""
        return pluralize(self.name)

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def label(self) -> str:
        """How messages name one (`Blog post not found`)."""
        return self.name.replace("_", " ").capitalize()

    @property
    def a_label(self) -> str:
        """`a comment`, `an order`."""
        article = "an" if self.name[0] in "aeiou" else "a"
        return f"{article} {self.name.replace('_', ' ')}"

    @property
    def plural_label(self) -> str:
        return self.plural.replace("_", " ")


def pluralize(name: str) -> str:
    if re.search(r"(s|x|z|ch|sh)\Z", name):
        return name + "es"
    if re.search(r"[^aeiou]y\Z", name):
        return name[:-1] + "ies"
    return name + "s"


def parse_resource(
    name: str, field_specs: Sequence[str], *, taken_names: frozenset[str]
) -> Resource:
    """The resource, or a `ScaffoldError`. `taken_names`: what the project already has (module
    names of its resources, its tables, its classes in snake_case)."""
    check_resource_name(name, taken_names)
    fields = tuple(parse_field(spec) for spec in (field_specs or DEFAULT_FIELDS))
    seen: set[str] = set()
    for field in fields:
        if field.name in seen:
            raise ScaffoldError(f"field {field.name!r} is given twice")
        seen.add(field.name)
    return Resource(name=name, fields=fields)


def check_resource_name(name: str, taken_names: frozenset[str]) -> None:
    check_identifier(name, "resource name")
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"resource name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    plural = pluralize(name)
    if name in taken_names:
        raise ScaffoldError(
            f"resource name {name!r} is taken: the project has a resource, table or module of "
            "that name"
        )
    if plural in taken_names:
        raise ScaffoldError(
            f"resource name {name!r} clashes: its plural {plural!r} is already in the project"
        )
    if name in GENERATED_CODE_NAMES or plural in GENERATED_CODE_NAMES:
        raise ScaffoldError(f"resource name {name!r} would shadow a name the generated code uses")


def parse_field(spec: str) -> Field:
    name, separator, type_name = spec.partition(":")
    if not separator:
        raise ScaffoldError(f"--field {spec!r}: expected name:type, e.g. title:str")
    check_identifier(name, f"--field {spec!r}: field name")
    if type_name not in FIELD_TYPES:
        known = ", ".join(FIELD_TYPES)
        raise ScaffoldError(f"--field {spec!r}: unknown type {type_name!r} (one of {known})")
    if name in OWN_COLUMNS:
        raise ScaffoldError(f"--field {spec!r}: every resource already has {name!r}")
    if name in ANNOTATION_NAMES:
        raise ScaffoldError(f"--field {spec!r}: {name!r} would shadow the type of other fields")
    if name.startswith("model_") or name in reserved_attribute_names():
        raise ScaffoldError(
            f"--field {spec!r}: {name!r} is taken by the model or the schemas' base classes"
        )
    return Field(name=name, type_name=type_name)


def check_identifier(name: str, what: str) -> None:
    if not SNAKE_CASE.fullmatch(name):
        raise ScaffoldError(
            f"{what} {name!r} is not snake_case (lower-case letters, digits, single "
            "underscores; a letter first)"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"{what} {name!r} is a Python keyword")
    if hasattr(builtins, name):
        raise ScaffoldError(f"{what} {name!r} is a Python builtin")


def reserved_attribute_names() -> frozenset[str]:
    """What the model's and the schemas' base classes already define (`metadata`, `create`,
    `model_dump`, `json`...)."""
    names: set[str] = set()
    for base in (Base, CRUDMixin, TimestampMixin, BaseModel):
        names.update(name for name in dir(base) if not name.startswith("_"))
    names.update({"newest_first", "model_config", "model_fields"})
    # The parameters of `CRUDMixin.create(session, **values)` and `update(session, **values)`.
    names.update({"session", "values", "self", "cls"})
    return frozenset(names)
