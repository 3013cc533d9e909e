"""Plan every file of a new resource, check it all, then write it all.

New files: model, schemas, service, routes and tests, rendered from `templates/`. Changed
files: `app/models/__init__.py`, `app/router.py` and `app/errors.py` (see `registration.py`).
Nothing is written until every name and every file has been checked; a refusal is a
`ScaffoldError` with one line.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.scaffold.formatting import format_files
from app.scaffold.registration import (
    add_not_found_error,
    imported_names,
    register_model,
    register_router,
)
from app.scaffold.spec import Resource, ScaffoldError, parse_resource

TEMPLATES = Path(__file__).resolve().parent / "templates"
RESOURCE_PACKAGES = ("models", "schemas", "services", "routes")


@dataclass(frozen=True)
class Written:
    plural: str
    created: list[Path]
    changed: list[Path]
    formatted: bool  # False: ruff is not installed, the files are as rendered


def new_resource(project: Path, name: str, field_specs: Sequence[str]) -> Written:
    """Write resource `name` into the project at `project`, or refuse without writing."""
    resource = parse_resource(name, field_specs, taken_names=taken_names(project))
    created = {
        project / "app" / "models" / f"{resource.name}.py": render("model", resource),
        project / "app" / "schemas" / f"{resource.name}.py": render("schemas", resource),
        project / "app" / "services" / f"{resource.name}.py": render("service", resource),
        project / "app" / "routes" / f"{resource.name}.py": render("routes", resource),
        project / "tests" / f"test_{resource.plural}_api.py": render("tests", resource),
    }
    for path in created:
        if path.exists():
            raise ScaffoldError(f"{path.relative_to(project)} already exists")
    changed = {
        path: edit(path.read_text(), resource)
        for path, edit in (
            (project / "app" / "models" / "__init__.py", register_model),
            (project / "app" / "router.py", register_router),
            (project / "app" / "errors.py", add_not_found_error),
        )
    }
    for path, text in {**created, **changed}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    formatted = format_files([*created, *changed])
    return Written(
        plural=resource.plural, created=list(created), changed=list(changed), formatted=formatted
    )


def taken_names(project: Path) -> frozenset[str]:
    """The module names under app/models, schemas, services and routes (`user`, `post`,
    `auth`, `base`, `errors`...) and the tables of the project's models."""
    names = {
        path.stem
        for package in RESOURCE_PACKAGES
        for path in (project / "app" / package).glob("*.py")
        if path.stem != "__init__"
    }
    models = ast.parse((project / "app" / "models" / "__init__.py").read_text())
    names.update(alias.name for alias in imported_names(models))
    for module in (project / "app" / "models").glob("*.py"):
        names.update(table_names(ast.parse(module.read_text())))
    return frozenset(name.lower() for name in names)


def table_names(module: ast.Module) -> list[str]:
    """The `__tablename__ = "..."` values of a model module."""
    return [
        node.value.value
        for node in ast.walk(module)
        if isinstance(node, ast.Assign)
        and any(
            isinstance(target, ast.Name) and target.id == "__tablename__" for target in node.targets
        )
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]


# --- the new files --------------------------------------------------------------------------


def render(template: str, resource: Resource) -> str:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return environment.get_template(f"{template}.py.jinja").render(context(resource))


def context(resource: Resource) -> dict[str, Any]:
    field_types = [field.type for field in resource.fields]
    sqlalchemy_names = {"ForeignKey", "Index", "Select", "select"}
    model_imports: dict[str, set[str]] = {
        "app.db.base": {"Base", "CRUDMixin", "TimestampMixin"},
        "app.db.pagination": {"Order"},
    }
    for field_type in field_types:
        sqlalchemy_names.update(field_type.sqlalchemy_names)
        for module, name in field_type.model_names:
            model_imports.setdefault(module, set()).add(name)
    standard = {module: names for module, names in model_imports.items() if "." not in module}
    project = {module: names for module, names in model_imports.items() if "." in module}
    lines = [import_line(module, names) for module, names in sorted(standard.items())]
    lines += [""] if standard else []
    lines += [
        import_line("sqlalchemy", sqlalchemy_names),
        "from sqlalchemy.orm import Mapped, mapped_column",
        "",
    ]
    lines += [import_line(module, names) for module, names in sorted(project.items())]
    defaults = {
        field.name: field.type.create_default
        for field in resource.fields
        if field.type.create_default is not None
    }
    return {
        "r": resource,
        "first": resource.fields[0],
        "model_imports": lines,
        "request_types": sorted({field_type.request_type for field_type in field_types}),
        "field_names": python_list(field.name for field in resource.fields),
        "float_names": python_list(
            field.name for field in resource.fields if field.type_name == "float"
        ),
        "has_float": any(field.type_name == "float" for field in resource.fields),
        "defaults": defaults,
        "default_names": python_list(defaults),
        "required": len(defaults) < len(resource.fields),
    }


def import_line(module: str, names: set[str]) -> str:
    """`from module import a, B, c` in ruff's (isort's) order: constants, classes, the rest."""

    def kind(name: str) -> tuple[int, str]:
        if name.isupper():
            return (0, name)
        return (1, name) if name[0].isupper() else (2, name)

    return f"from {module} import {', '.join(sorted(names, key=kind))}"


def python_list(names: Any) -> str:
    return "[" + ", ".join(f'"{name}"' for name in names) + "]"
