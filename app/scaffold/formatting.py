"""ruff on files the tools write: `ruff format`, `ruff check --fix`, `ruff format`.

Used by `manage.py new-resource` on what it wrote, and by Alembic on each new revision
(`[post_write_hooks]` in alembic.ini runs `python -m app.scaffold.formatting FILE`), so that
generated code passes `make lint` with no hand edit.

ruff is a development dependency: where it is not installed (the Docker image), the files are
left as written and a one-line note says so; the command that wrote them still succeeds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def ruff_installed() -> bool:
    return importlib.util.find_spec("ruff") is not None


def format_files(paths: Sequence[Path]) -> bool:
    """Fix and format `paths` with the project's ruff settings; False when ruff is not
    installed (nothing done). What ruff cannot fix is reported by it, on stderr."""
    if not ruff_installed():
        return False
    files = [str(path) for path in paths]
    ruff = [sys.executable, "-m", "ruff"]
    # Formatted first, so that `check` reports only what formatting cannot fix (long strings),
    # then again after its fixes (sorted imports).
    subprocess.run([*ruff, "format", "--quiet", *files], check=False)
    subprocess.run([*ruff, "check", "--fix", "--quiet", *files], check=False)
    subprocess.run([*ruff, "format", "--quiet", *files], check=False)
    return True


def main(arguments: Sequence[str]) -> int:
    if not format_files([Path(argument) for argument in arguments]):
        print(  # noqa: T201  (the note Alembic's user reads)
            "ruff is not installed here: the revision is left unformatted "
            "(run `make format` where the dev dependencies are)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
