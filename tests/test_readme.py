"""README.md and docs/ stay true to the code: every setting, CLI command, make target, link and
file they name. The README stays short (a newcomer reads it in ten minutes) and links to the
depth in docs/. Nothing here pins prose that `manage.py new-resource` would have to edit: the
files it adds (a module in each resource layer, a test module) need no mention anywhere."""

from __future__ import annotations

import re
import subprocess

import pytest
import typer

from app.config import Settings
from manage import cli
from tests.conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
MAKEFILE = (PROJECT_ROOT / "Makefile").read_text()
DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
MAX_README_LINES = 350

# The seed README's sections, in its order: the README keeps them, in that order.
SEED_SECTIONS = [
    "Contents",
    "Stack overview",
    "Requirements",
    "Project layout",
    "Configuration",
    "Authentication & JWT",
    "Local development (without Docker)",
    "Database & migrations (Alembic)",
    "Docker Compose (API + Postgres)",
    "Management CLI (`manage.py`)",
    "API quick test",
    "SQLAlchemy usage (async)",
    "Architecture & Development Guidelines",
    "Troubleshooting",
    "License",
]

# Where `manage.py new-resource` adds files: never required in a layout tree.
RESOURCE_LAYERS = ("app/models/", "app/schemas/", "app/services/", "app/routes/")


def section(title: str, text: str = README) -> str:
    """The text under the `## title` heading, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"no '## {title}' section"
    return match.group(1)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower-case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> list[str]:
    """Markdown headings, outside fenced code blocks (a `# comment` in bash is not one)."""
    outside = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.findall(r"^#{1,6} (.+)$", outside, re.M)


def test_the_readme_is_short() -> None:
    lines = README.count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move the depth to docs/"


def test_the_readme_links_every_doc() -> None:
    links = set(re.findall(r"\]\((docs/[^)#]+)", README))
    missing = [f"docs/{doc.name}" for doc in DOCS if f"docs/{doc.name}" not in links]
    assert not missing, f"the README does not link {missing}"


def test_the_seed_sections_in_the_seed_order() -> None:
    sections = re.findall(r"^## (.+)$", re.sub(r"^```.*?^```", "", README, flags=re.M | re.S), re.M)
    kept = [title for title in sections if title in SEED_SECTIONS]
    assert kept == SEED_SECTIONS


def test_the_first_screen_starts_and_signs_in() -> None:
    """The two commands, `poetry` on PATH and both ways to a token without Supabase come before
    anything else."""
    first = section("Quick start")
    assert README.index("## Quick start") < README.index("## Contents")
    for needed in (
        "make run",
        "make test",
        'export PATH="$PWD/.tools/poetry/bin:$PATH"',
        "poetry run python scripts/dev_token.py",
        "poetry run python manage.py dev-supabase",
    ):
        assert needed in first, needed
    assert re.search(r"^POETRY := \$\(TOOLS_DIR\)/poetry/bin/poetry$", MAKEFILE, re.M)
    assert re.search(r"^TOOLS_DIR := \$\(CURDIR\)/\.tools$", MAKEFILE, re.M)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_configuration_reference(name: str) -> None:
    reference = (PROJECT_ROOT / "docs/configuration.md").read_text()
    assert f"| `{name}` |" in section("Every setting", reference)


@pytest.mark.parametrize("command", sorted(typer.main.get_group(cli).commands))
def test_every_cli_command_is_shown(command: str) -> None:
    assert f"poetry run python manage.py {command}" in section("Management CLI (`manage.py`)")


@pytest.mark.parametrize("path", ["README.md", *(f"docs/{doc.name}" for doc in DOCS)])
def test_make_targets_named_exist(path: str) -> None:
    text = (PROJECT_ROOT / path).read_text()
    targets = set(re.findall(r"(?:`|^|&& )make ([\w-]+)", text, re.M))
    if path == "README.md":
        assert {"run", "test", "install", "lint"} <= targets
    for target in targets:
        assert re.search(rf"^{target}:", MAKEFILE, re.M), f"make {target} ({path})"


@pytest.mark.parametrize("path", ["README.md", *(f"docs/{doc.name}" for doc in DOCS)])
def test_links_point_at_files_and_headings_that_exist(path: str) -> None:
    source = PROJECT_ROOT / path
    text = re.sub(r"^```.*?^```", "", source.read_text(), flags=re.M | re.S)
    for link in re.findall(r"\]\(((?!https?:|mailto:)[^)\s]+)\)", text):
        target, _, anchor = link.partition("#")
        file = (source.parent / target).resolve() if target else source
        assert file.exists(), f"{path}: {link}"
        if anchor and file.suffix == ".md":
            slugs = {github_slug(heading) for heading in headings(file.read_text())}
            assert anchor in slugs, f"{path}: {link}"


def layout_tree(text: str = README) -> set[str]:
    """The paths the "Project layout" tree names (directories end with `/`)."""
    block = section("Project layout", text).split("```", 2)[1]
    paths: set[str] = set()
    parents: list[str] = []
    for line in block.splitlines():
        match = re.match(r"^((?:[│ ]  )*)[├└]─ (\S+)", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 3
        name = match.group(2)
        parents = parents[:depth]
        path = "".join(parents) + name
        paths.add(path)
        if name.endswith("/"):
            parents.append(name)
    return paths


def architecture_tree() -> set[str]:
    return layout_tree((PROJECT_ROOT / "docs/architecture.md").read_text())


@pytest.mark.parametrize("tree", [layout_tree, architecture_tree])
def test_layout_trees_name_only_files_that_exist(tree: object) -> None:
    assert callable(tree)
    paths: set[str] = tree()
    assert "app/main.py" in paths and "app/db/" in paths
    missing = sorted(path for path in paths if not (PROJECT_ROOT / path).exists())
    assert not missing, f"the layout names files that do not exist: {missing}"


def tracked(name: str) -> bool:
    return (
        subprocess.run(
            ["git", "ls-files", "--error-unmatch", name],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def test_the_architecture_tree_names_every_package_module_and_top_level_entry() -> None:
    """Every package of app/, every module outside the resource layers, every top-level entry."""
    paths = architecture_tree()
    app = PROJECT_ROOT / "app"
    modules = {
        str(path.relative_to(PROJECT_ROOT))
        for path in app.rglob("*.py")
        if path.name != "__init__.py"
        and "templates" not in path.parts
        and not str(path.relative_to(PROJECT_ROOT)).startswith(RESOURCE_LAYERS)
    }
    packages = {
        str(path.parent.relative_to(PROJECT_ROOT)) + "/"
        for path in app.rglob("__init__.py")
        if "templates" not in path.parts
    }
    top_level = {
        entry.name + ("/" if entry.is_dir() else "")
        for entry in PROJECT_ROOT.iterdir()
        if tracked(entry.name) and entry.name != ".gitignore"
    }
    unlisted = sorted((modules | packages | top_level) - paths)
    assert not unlisted, f"add these to docs/architecture.md's layout tree: {unlisted}"
