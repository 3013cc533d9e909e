"""README.md stays true to the code: every setting, CLI command, make target and link it names."""

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


def section(title: str) -> str:
    """The text under the `## title` heading, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert match is not None, f"no '## {title}' section"
    return match.group(1)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower-case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_configuration_table(name: str) -> None:
    assert f"| `{name}` |" in section("Configuration")


@pytest.mark.parametrize("command", sorted(typer.main.get_group(cli).commands))
def test_every_cli_command_is_shown(command: str) -> None:
    assert f"poetry run python manage.py {command}" in section("Management CLI (`manage.py`)")


def test_make_targets_named_in_the_readme_exist() -> None:
    targets = set(re.findall(r"`make ([\w-]+)", README))
    assert {"run", "test", "install", "lint"} <= targets
    for target in targets:
        assert re.search(rf"^{target}:", MAKEFILE, re.M), f"make {target}"


def test_in_page_links_point_at_headings() -> None:
    anchors = {github_slug(h) for h in re.findall(r"^#{1,6} (.+)$", README, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert links
    for link in links:
        assert link in anchors, link


def test_local_files_it_names_exist() -> None:
    names = set(re.findall(r"\]\(((?!https?:|#)[^)]+)\)", README))
    assert "docs/supabase.md" in names
    for name in names:
        path, _, anchor = name.partition("#")
        assert (PROJECT_ROOT / path).exists(), name
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (PROJECT_ROOT / path).read_text(), re.M)
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, name


def layout_tree() -> set[str]:
    """The paths the "Project layout" tree names (directories end with `/`)."""
    block = section("Project layout").split("```", 2)[1]
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


def test_layout_tree_names_only_files_that_exist() -> None:
    paths = layout_tree()
    assert "app/main.py" in paths and "app/db/" in paths
    missing = sorted(path for path in paths if not (PROJECT_ROOT / path).exists())
    assert not missing, f"the README's layout names files that do not exist: {missing}"


def test_layout_tree_names_every_package_and_top_level_entry() -> None:
    """Every directory of `app/` and every tracked top-level entry: the tree is a map, not an
    inventory, so a new module (a generated resource's) needs no edit of the README."""
    paths = layout_tree()
    packages = {
        str(path.relative_to(PROJECT_ROOT)) + "/"
        for path in (PROJECT_ROOT / "app").rglob("*")
        if path.is_dir() and (path / "__init__.py").is_file()
    }
    top_level = {
        entry.name + ("/" if entry.is_dir() else "")
        for entry in PROJECT_ROOT.iterdir()
        if subprocess.run(
            ["git", "ls-files", "--error-unmatch", entry.name],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=False,
        ).returncode
        == 0
        and entry.name not in {".gitignore"}
    }
    unlisted = sorted((packages | top_level) - paths)
    assert not unlisted, f"add these to the README's layout tree: {unlisted}"
