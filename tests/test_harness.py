"""The test harness itself and `make help`: what a newcomer sees first."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out


@pytest.mark.parametrize("processes", [[], ["-n", "2"]], ids=["one-process", "as-make-test"])
def test_skip_banner_gives_the_whole_reason_and_the_right_hint(processes: list[str]) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CI", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")
    }
    env["TEST_POSTGRES_URL"] = "postgresql://postgres@127.0.0.1:1/postgres"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *processes,
            "tests/test_posts_api.py::test_body_defaults_to_empty",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    out = result.stdout
    assert "1 passed, 1 skipped" in out
    assert "PostgreSQL half of the suite SKIPPED" in out
    reason = next(line for line in out.splitlines() if "is not reachable" in line)
    # The driver's message in full (it used to be cut at 120 characters, mid-word).
    assert reason.startswith("PostgreSQL at postgresql://postgres@127.0.0.1:1/postgres")
    assert reason.rstrip().endswith("port 1 failed: Connection refused"), reason
    assert "Check TEST_POSTGRES_URL (or unset it to use 127.0.0.1:5432)" in out


def test_make_help_lists_every_target() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    targets = set()
    for line in re.findall(r"^\.PHONY:(.*)$", makefile, re.M):
        targets.update(line.split())
    help_text = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = set(re.findall(r"^make ([\w-]+)", help_text, re.M))
    assert targets - {"help"} <= listed, sorted(targets - {"help"} - listed)


def test_make_bench_options_are_reachable() -> None:
    """`make bench --help` is make's own help: the options go through BENCH_ARGS, which
    `make help` and docs/performance.md say, and which reaches bench/run.py's own --help."""
    help_text = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "make bench BENCH_ARGS=--help" in help_text
    assert "make bench BENCH_ARGS=--help" in (PROJECT_ROOT / "docs/performance.md").read_text()
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "bench", "BENCH_ARGS=--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert dry_run.rstrip().splitlines()[-1].endswith("python bench/run.py --help")
    usage = subprocess.run(
        [sys.executable, "bench/run.py", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert usage.startswith("usage:") and "--rounds" in usage and "--targets" in usage
