"""`manage.py new-resource` (contract: Resources): refusals write nothing; a generated resource,
in a copy of the project, migrates, serves, passes ruff and mypy, and its own tests pass."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from typer.testing import CliRunner

import manage
from app.config import Settings
from app.db.database import open_session
from app.models.user import User
from app.scaffold import formatting
from app.scaffold.generator import new_resource
from app.scaffold.spec import ScaffoldError
from app.security import issue_token
from tests.conftest import PROJECT_ROOT, TEST_SECRET, make_settings
from tests.processes import RunningServer, copy_project, running_server

# --- refusals: one line, exit 1, nothing written ------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """What the generator reads and writes: app/ and tests/ (an empty one is enough)."""
    shutil.copytree(
        PROJECT_ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "tests").mkdir()
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def run_cli(project: Path, monkeypatch: pytest.MonkeyPatch, *arguments: str) -> tuple[int, str]:
    monkeypatch.setattr(manage, "PROJECT_ROOT", project)
    result = CliRunner().invoke(manage.cli, ["new-resource", *arguments])
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["Comment"], "not snake_case"),
        (["blog-post"], "not snake_case"),
        (["blog__post"], "not snake_case"),
        (["2fa"], "not snake_case"),
        (["class"], "Python keyword"),
        (["match"], "Python keyword"),
        (["list"], "Python builtin"),
        (["post"], "taken"),
        (["user"], "taken"),
        (["posts"], "taken"),
        (["auth"], "taken"),  # app/routes/auth.py
        (["error"], "plural 'errors'"),  # app/schemas/errors.py
        (["session"], "shadow"),
        (["a" * 31], "longer than 30"),
        (["comment", "--field", "title"], "expected name:type"),
        (["comment", "--field", "title:string"], "unknown type 'string'"),
        (["comment", "--field", "Title:str"], "not snake_case"),
        (["comment", "--field", "from:str"], "Python keyword"),
        (["comment", "--field", "owner_id:int"], "already has 'owner_id'"),
        (["comment", "--field", "id:int"], "Python builtin"),
        (["comment", "--field", "metadata:str"], "taken by the model"),
        (["comment", "--field", "model_name:str"], "taken by the model"),
        (["comment", "--field", "datetime:datetime"], "shadow the type"),
        (["comment", "--field", "session:str"], "taken by the model"),
        (["comment", "--field", "title:str", "--field", "title:text"], "given twice"),
        # A trailing newline is not the end of the name (`$` would accept it).
        (["gadget\n"], "not snake_case"),
        (["comment", "--field", "title\n:str"], "not snake_case"),
        (["comment", "--field", "title:str\n"], "unknown type 'str\\n'"),
    ],
)
def test_bad_names_are_refused_in_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], reason: str
) -> None:
    before = snapshot(project)
    exit_code, stderr = run_cli(project, monkeypatch, *arguments)
    assert exit_code == 1
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert reason in stderr
    assert snapshot(project) == before


def test_a_resource_is_written_once(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exit_code, _ = run_cli(project, monkeypatch, "blog_post", "--field", "rating:int")
    assert exit_code == 0
    for path in ("models", "schemas", "services", "routes"):
        assert (project / "app" / path / "blog_post.py").is_file()
    assert (project / "tests" / "test_blog_posts_api.py").is_file()
    router = (project / "app" / "router.py").read_text()
    assert "(blog_post.router, API_V1_PREFIX)," in router
    assert (
        "from app.models.blog_post import BlogPost"
        in (project / "app" / "models" / "__init__.py").read_text()
    )
    assert 'super().__init__("Blog post not found")' in (project / "app" / "errors.py").read_text()
    model = (project / "app" / "models" / "blog_post.py").read_text()
    assert 'ForeignKey("users.id", ondelete="CASCADE")' in model
    assert "rating: Mapped[int]" in model

    before = snapshot(project)
    exit_code, stderr = run_cli(project, monkeypatch, "blog_post")
    assert exit_code == 1 and "taken" in stderr
    exit_code, stderr = run_cli(project, monkeypatch, "blog_posts")
    assert exit_code == 1 and "taken" in stderr
    assert snapshot(project) == before


def test_a_file_in_the_way_is_refused_before_anything_is_written(project: Path) -> None:
    (project / "tests" / "test_comments_api.py").write_text("# mine\n")
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match="tests/test_comments_api.py already exists"):
        new_resource(project, "comment", [])
    assert snapshot(project) == before


def test_revision_hook_without_ruff_keeps_the_file_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the Docker image ruff is not installed: `migrate -m` must still work."""
    revision = tmp_path / "revision.py"
    revision.write_text("x  =  1\n")
    monkeypatch.setattr(formatting, "ruff_installed", lambda: False)
    assert formatting.main([str(revision)]) == 0
    assert revision.read_text() == "x  =  1\n"
    assert capsys.readouterr().err.count("\n") == 1


# Run before anything else by every Python process of the test (sitecustomize on PYTHONPATH):
# `import ruff` fails and `importlib.util.find_spec("ruff")` answers None, as without ruff.
HIDE_RUFF = "import sys\n\nsys.modules['ruff'] = None\n"


@pytest.mark.processes
def test_migrate_works_where_ruff_is_not_installed(tmp_path: Path) -> None:
    """As in the Docker image: the post-write hook of alembic.ini says so in one line, and the
    revision is written all the same."""
    project = copy_project(tmp_path / "project")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HIDE_RUFF)
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "site"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        "JWT_SECRET_KEY": TEST_SECRET,
        "APP_ENV": "test",
    }
    run(project, env, sys.executable, "manage.py", "upgrade")
    migrated = run(project, env, sys.executable, "manage.py", "migrate", "-m", "nothing new")
    assert "ruff is not installed here" in migrated.stderr
    assert len(list((project / "alembic" / "versions").glob("*_nothing_new.py"))) == 1


# --- end to end, in a copy of the project -------------------------------------------------------

FIELDS = [
    "title:str",
    "notes:text",
    "stars:int",
    "score:float",
    "public:bool",
    "seen_at:datetime",
]
GENERATED = [
    "app/models/review.py",
    "app/schemas/review.py",
    "app/services/review.py",
    "app/routes/review.py",
    "tests/test_reviews_api.py",
]
# The time each step may take on a loaded 2-core machine (usually a few seconds each).
STEP_TIMEOUT = 180


def run(project: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


async def make_users(settings: Settings) -> dict[str, str]:
    """An owner and someone else, and an API token for each."""
    tokens = {}
    async with open_session(settings) as session:
        for who in ("owner", "other"):
            user = await User.create(session, email=f"{who}@example.com", is_active=True)
            await session.commit()
            tokens[who] = issue_token(settings, user).token
    return tokens


# `make lint` and the quick suite in the copy: minutes on a loaded 2-core machine.
SUITE_TIMEOUT = 1500


def clone_project(destination: Path) -> Path:
    """The working tree as a commit of it would be (tracked and new files, not the ignored
    ones), in a git repository of its own, using the project's `.venv` and `.tools` (linked, so
    nothing is installed) and a copy of its mypy cache."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    for name in (".venv", ".tools"):
        (destination / name).symlink_to(PROJECT_ROOT / name)
    if (PROJECT_ROOT / ".mypy_cache").is_dir():
        shutil.copytree(PROJECT_ROOT / ".mypy_cache", destination / ".mypy_cache")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *command], cwd=destination, check=True, capture_output=True)
    return destination


@pytest.mark.processes
@pytest.mark.minutes
def test_generated_resource_passes_lint_and_the_whole_quick_suite(tmp_path: Path) -> None:
    """The contract's steps in a copy of the project, with no hand edit: `new-resource`,
    `migrate -m`, `upgrade`; the API serves it; then `make lint` and the whole quick suite
    (`pytest -m "not processes"`, the generated tests among it) pass there. Nothing in the suite
    or the docs may list the project's files or routes by hand."""
    project = clone_project(tmp_path / "project")
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    env = {
        **{name: value for name, value in os.environ.items() if name != "DATABASE_URL"},
        "JWT_SECRET_KEY": TEST_SECRET,
        "APP_ENV": "test",
    }
    python = sys.executable

    fields = [argument for spec in FIELDS for argument in ("--field", spec)]
    run(project, env, python, "manage.py", "new-resource", "review", *fields)
    assert all((project / path).is_file() for path in GENERATED)

    with_db = {**env, "DATABASE_URL": database_url}
    run(project, with_db, python, "manage.py", "upgrade")
    run(project, with_db, python, "manage.py", "migrate", "-m", "add reviews")
    revisions = list((project / "alembic" / "versions").glob("*_add_reviews.py"))
    assert len(revisions) == 1
    assert 'op.create_table(\n        "reviews",' in revisions[0].read_text()
    run(project, with_db, python, "manage.py", "upgrade")
    # The API changed: `make client`, the step docs/development.md gives after a route change
    # (tests/test_typescript_client.py checks the committed client). Without the project's
    # node_modules (a laptop without Node) that check skips, saying why, and so is not needed.
    node_modules = PROJECT_ROOT / "clients" / "typescript" / "node_modules"
    if node_modules.is_dir():
        (project / "clients" / "typescript" / "node_modules").symlink_to(node_modules)
        installed = (
            "-o",
            ".venv/.installed",
            "-o",
            "clients/typescript/node_modules/.package-lock.json",
        )
        run(project, env, "make", "-s", *installed, "client")
    else:
        # The schema half of `make client` needs no Node: the schema test still checks it.
        schema = "clients/typescript/openapi.json"
        run(
            project,
            env,
            str(project / ".venv" / "bin" / "python"),
            "scripts/dump_openapi.py",
            schema,
        )

    # `make lint` (ruff and mypy over the whole copy) runs while the API is served and the
    # quick suite runs: on two cores, side by side, the minutes of a cold mypy (a fresh clone's)
    # overlap the suite's. `-o`: the linked .venv is installed; its stamp is older than the
    # copied files, do not reinstall.
    lint = subprocess.Popen(
        ["make", "-s", "-o", ".venv/.installed", "lint"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        tokens = asyncio.run(make_users(make_settings(database_url)))
        check_the_api(project, database_url, tokens)
        quick_suite = [
            python,
            "-m",
            "pytest",
            "-m",
            "not processes",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        # In two processes (pytest-xdist): the suite is mostly one core's work, and this test
        # was a quarter of `make test`'s time.
        first = run_tests(
            project, env, [*quick_suite, "-n", "2", f"--junitxml={tmp_path / 'suite.xml'}"]
        )
        output, _ = lint.communicate(timeout=SUITE_TIMEOUT)
        assert lint.returncode == 0, output
    finally:
        if lint.poll() is None:
            lint.kill()
            lint.wait()

    report = ElementTree.parse(tmp_path / "suite.xml").getroot()
    failed = [node_id(case) for case in report.iter("testcase") if failing(case)]
    if first.returncode != 0:
        # The nested suite runs on a machine the outer one (and lint) already loads: a test that
        # timed out there (the fake Supabase not answering within its timeout) gets one more
        # run; a real failure fails twice.
        assert failed, f"{first.stdout[-6000:]}\n{first.stderr[-2000:]}"
        again = run_tests(project, env, [*quick_suite, *failed])
        assert again.returncode == 0, f"failed twice: {failed}\n{again.stdout[-6000:]}"
    # The generated tests were part of it (and passed, the first time or the second).
    generated = [
        case
        for case in report.iter("testcase")
        if case.get("classname", "").startswith("tests.test_reviews_api")
    ]
    assert len(generated) > 20


def run_tests(
    project: Path, env: dict[str, str], command: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
        check=False,
    )


def failing(case: ElementTree.Element) -> bool:
    return any(child.tag in {"failure", "error"} for child in case)


def node_id(case: ElementTree.Element) -> str:
    """pytest's id of a junit test case: `tests.test_x.TestY` and `test_z[p]` make
    `tests/test_x.py::TestY::test_z[p]`."""
    parts = case.get("classname", "").split(".")
    split = next((i for i, part in enumerate(parts) if part[:1].isupper()), len(parts))
    return "::".join(["/".join(parts[:split]) + ".py", *parts[split:], case.get("name", "")])


def check_the_api(project: Path, database_url: str, tokens: dict[str, str]) -> None:
    owner = {"Authorization": f"Bearer {tokens['owner']}"}
    other = {"Authorization": f"Bearer {tokens['other']}"}
    body = {
        "title": " First ",
        "stars": 5,
        "score": 4.5,
        "public": True,
        "seen_at": "2030-01-02T05:04:05+02:00",
    }
    with (
        running_server(database_url, kind=RunningServer, project=project) as server,
        httpx.Client(base_url=f"{server.base_url}/api/v1/reviews/", timeout=30) as api,
    ):
        assert api.get("").status_code == 401
        # The generated routes are named like every other (app/router.py: `<tag>-<name>`).
        schema = api.get(f"{server.base_url}/openapi.json").json()["paths"]["/api/v1/reviews/"]
        assert schema["post"]["operationId"] == "reviews-create_review"
        assert schema["post"]["summary"] == "Create a review; its owner is the caller"
        created = api.post("", json=body, headers=owner)
        assert created.status_code == 201, created.text
        review = created.json()
        assert review["title"] == "First" and review["notes"] == ""
        assert review["seen_at"] == "2030-01-02T03:04:05Z"
        path = str(review["id"])

        listed = api.get("", params={"owner_id": review["owner_id"]}, headers=other)
        assert listed.status_code == 200
        assert listed.json()["total"] == 1 and listed.json()["items"] == [review]
        assert api.get(path, headers=other).json() == review

        assert api.patch(path, json={"stars": 1}, headers=other).status_code == 403
        assert api.delete(path, headers=other).status_code == 403
        changed = api.patch(path, json={"stars": 1}, headers=owner)
        assert changed.status_code == 200 and changed.json()["stars"] == 1
        assert api.post("", json={**body, "stars": "5"}, headers=owner).status_code == 422

        assert api.delete(path, headers=owner).status_code == 204
        assert api.get(path, headers=owner).status_code == 404
