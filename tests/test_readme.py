"""README.md stays true to the code: every setting, CLI command, make target and link it names."""

from __future__ import annotations

import re

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
    targets = set(re.findall(r"`make (\w+)", README))
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
