"""Every field rule lives in `app/fields.py` and nowhere else (issue 14, "Design review"): one
canonical email, one set of lengths and limits, imported by every layer that needs them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.fields import canonical_email
from tests.conftest import PROJECT_ROOT

APP = PROJECT_ROOT / "app"


@pytest.mark.parametrize(
    ("email", "canonical"),
    [
        ("boss@xn--80ak6aa92e.com", "boss@xn--80ak6aa92e.com"),
        ("boss@аррӏе.com", "boss@xn--80ak6aa92e.com"),
        ("Boss@АРРӀЕ.COM", "boss@xn--80ak6aa92e.com"),
        ("BOSS@XN--80AK6AA92E.COM", "boss@xn--80ak6aa92e.com"),
        ("Ada@Example.COM", "ada@example.com"),
        ("jörg@bücher.de", "jörg@xn--bcher-kva.de"),
        ("x@bu\u0308cher.de", "x@xn--bcher-kva.de"),  # decomposed ü: normalised first
        ("x@straße.de", "x@xn--strae-oqa.de"),  # IDNA 2008 (IDNA 2003 said strasse.de)
        ("x@b\u3002com", "x@b.com"),  # an ideographic full stop is a dot
        ('"a@b"@example.com', '"a@b"@example.com'),  # the domain follows the last @
    ],
)
def test_canonical_email(email: str, canonical: str) -> None:
    assert canonical_email(email) == canonical
    assert canonical_email(canonical) == canonical


@pytest.mark.parametrize("email", ["x@☃.com", "x@-bücher.de", "x@bücher..de", "nobody", "@a.com"])
def test_no_canonical_form(email: str) -> None:
    with pytest.raises(ValueError):
        canonical_email(email)


def module_constants(path: Path) -> set[str]:
    """The UPPER_CASE names a module assigns at its top level."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper())
    return names


def test_no_module_redefines_a_field_rule() -> None:
    rules = module_constants(APP / "fields.py")
    assert {"EMAIL_MAX_LENGTH", "FULL_NAME_MAX_LENGTH", "MAX_INT_ID"} <= rules
    redefined = {
        f"{path.relative_to(PROJECT_ROOT)}: {name}"
        for path in APP.rglob("*.py")
        if path != APP / "fields.py"
        for name in module_constants(path) & rules
    }
    assert redefined == set()


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_security_does_not_reach_into_the_database_layer() -> None:
    """Tokens are checked without the data layer (docs/architecture.md); the id bound a token
    may carry is a field rule."""
    imported = imported_modules(APP / "security.py")
    assert "app.config" in imported
    assert not {module for module in imported if module.startswith("app.db")}


def test_emails_are_lower_cased_only_by_the_canonical_form() -> None:
    """No `email.lower()` (or `(… email …).lower()`) outside app/fields.py: a second spelling
    of the rule drifts from the first (the exchange once stored `boss@xn--…` while the API
    stored `boss@аррӏе.com`)."""
    offenders = []
    for path in APP.rglob("*.py"):
        # The fake Supabase and its dev server play GoTrue, which lower-cases in its own way.
        if path == APP / "fields.py" or "fake" in path.parts or path.stem == "dev_server":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("lower", "casefold")
                and "email" in ast.unparse(node.func.value).lower()
            ):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == []
