"""The edits that register a new resource in files the project already has: its model in
`app/models/__init__.py` (so Alembic's autogenerate sees it), its router in `app/router.py`,
its 404 in `app/errors.py`. Each takes the file's text and returns the new text, or refuses
(`ScaffoldError`) when the file does not have the shape it expects; nothing is written here.
"""

from __future__ import annotations

import ast

from app.scaffold.spec import Resource, ScaffoldError


def imported_names(module: ast.Module) -> list[ast.alias]:
    return [
        alias for node in module.body if isinstance(node, ast.ImportFrom) for alias in node.names
    ]


def register_model(source: str, resource: Resource) -> str:
    """`from app.models.<name> import <Class>` and the class in `__all__`."""
    module = ast.parse(source)
    lines = source.splitlines()
    imports = [node for node in module.body if isinstance(node, ast.ImportFrom)]
    exported = next(
        (
            node
            for node in module.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ),
        None,
    )
    if not imports or exported is None or not isinstance(exported.value, ast.List):
        raise ScaffoldError("app/models/__init__.py: no model imports and `__all__` list found")
    names = sorted(
        [alias.asname or alias.name for alias in imported_names(module)] + [resource.class_name]
    )
    new_import = f"from app.models.{resource.name} import {resource.class_name}"
    import_lines = sorted(
        [*(lines[node.lineno - 1] for node in imports if node.lineno == node.end_lineno)]
        + [new_import]
    )
    if len(import_lines) != len(imports) + 1:
        raise ScaffoldError("app/models/__init__.py: expected one-line model imports")
    exported_line = "__all__ = [" + ", ".join(f'"{name}"' for name in names) + "]"
    first, last = imports[0].lineno - 1, imports[-1].end_lineno or imports[-1].lineno
    rebuilt = (
        lines[:first]
        + import_lines
        + lines[last : exported.lineno - 1]
        + [exported_line]
        + lines[(exported.end_lineno or exported.lineno) :]
    )
    return "\n".join(rebuilt) + "\n"


def register_router(source: str, resource: Resource) -> str:
    """The route module in `from app.routes import ...`, and `(<name>.router, API_V1_PREFIX),`
    at the end of `ROUTERS`."""
    module = ast.parse(source)
    lines = source.splitlines()
    routes_import = next(
        (
            node
            for node in module.body
            if isinstance(node, ast.ImportFrom) and node.module == "app.routes"
        ),
        None,
    )
    routers = next(
        (
            node
            for node in module.body
            if isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "ROUTERS"
            and isinstance(node.value, ast.List)
        ),
        None,
    )
    if routes_import is None or routers is None or routers.end_lineno is None:
        raise ScaffoldError("app/router.py: no `from app.routes import` and `ROUTERS` list found")
    if routers.end_lineno <= routers.lineno or not lines[routers.end_lineno - 1].startswith("]"):
        raise ScaffoldError("app/router.py: expected `ROUTERS` with one entry per line")
    modules = sorted([alias.name for alias in routes_import.names] + [resource.name])
    entry = f"    ({resource.name}.router, API_V1_PREFIX),"
    closing = routers.end_lineno - 1
    import_end = routes_import.end_lineno or routes_import.lineno
    rebuilt = (
        lines[: routes_import.lineno - 1]
        + [f"from app.routes import {', '.join(modules)}"]
        + lines[import_end:closing]
        + [entry]
        + lines[closing:]
    )
    return "\n".join(rebuilt) + "\n"


def add_not_found_error(source: str, resource: Resource) -> str:
    """`<Class>NotFound(NotFound)` after the last `...NotFound` error."""
    module = ast.parse(source)
    not_found = [
        node
        for node in module.body
        if isinstance(node, ast.ClassDef)
        and any(isinstance(base, ast.Name) and base.id == "NotFound" for base in node.bases)
    ]
    if not not_found or not_found[-1].end_lineno is None:
        raise ScaffoldError("app/errors.py: no `NotFound` errors found")
    error = f"{resource.class_name}NotFound"
    if any(isinstance(node, ast.ClassDef) and node.name == error for node in module.body):
        raise ScaffoldError(f"app/errors.py already has {error}")
    lines = source.splitlines()
    after = not_found[-1].end_lineno
    new_class = [
        "",
        "",
        f"class {error}(NotFound):",
        "    def __init__(self) -> None:",
        f'        super().__init__("{resource.label} not found")',
    ]
    return "\n".join(lines[:after] + new_class + lines[after:]) + "\n"
