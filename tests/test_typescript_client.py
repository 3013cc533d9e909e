"""The committed TypeScript client (clients/typescript/) is what `make client` generates from
the API as it is now: an endpoint changed without `make client` fails here (contract: The front
door). The client's own tests, against a real API, are `make client-test` (its `npm test`)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import IN_CI, PROJECT_ROOT

CLIENT = PROJECT_ROOT / "clients" / "typescript"
REGENERATE = "run `make client` and commit clients/typescript/"


def dump_openapi_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dump_openapi", PROJECT_ROOT / "scripts" / "dump_openapi.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fresh_schema() -> str:
    script = dump_openapi_script()
    text: str = script.dump(script.openapi_document())
    return text


def test_committed_schema_is_the_apps(fresh_schema: str) -> None:
    committed = (CLIENT / "openapi.json").read_text(encoding="utf-8")
    assert committed == fresh_schema, f"clients/typescript/openapi.json is stale: {REGENERATE}"


def node_tools() -> tuple[str, Path]:
    """node, and the generator as `npm ci` installed it; missing: a failure in CI, else a skip
    that says how to get them."""
    node = shutil.which("node")
    generator = CLIENT / "node_modules" / ".bin" / "openapi-typescript"
    if node is None or not generator.exists():
        what = "node is not on PATH" if node is None else f"{generator} is missing"
        reason = f"{what}: `make client-install` (Node 20.19+, npm) installs the generator"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires this test to run (.ci/run installs both)")
        pytest.skip(reason)
    return node, generator


@pytest.mark.processes
def test_committed_client_is_a_fresh_generation(fresh_schema: str, tmp_path: Path) -> None:
    """The generator as package.json runs it (`npm run generate`), in a copy, on the schema
    dumped now."""
    node_tools()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(CLIENT / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(CLIENT / "node_modules")
    (tmp_path / "src").mkdir()
    (tmp_path / "openapi.json").write_text(fresh_schema, encoding="utf-8")
    result = subprocess.run(
        ["npm", "run", "-s", "generate"],
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    generated = (tmp_path / "src" / "schema.d.ts").read_text(encoding="utf-8")
    committed = (CLIENT / "src" / "schema.d.ts").read_text(encoding="utf-8")
    assert committed == generated, f"clients/typescript/src/schema.d.ts is stale: {REGENERATE}"
