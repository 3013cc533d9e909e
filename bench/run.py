"""`make bench`: load the API and same-work references with wrk, in one run, and compare.

What it does:
- creates a throwaway PostgreSQL database (BENCH_POSTGRES_URL, default the local server),
  migrates it and seeds 10,000 users (id 1 is a superuser) and 50,000 posts across them;
- for the rows at scale (`posts_list_1m`, `users_list_100k`), a second throwaway database copied
  from a template of 100,000 users and 1,000,000 posts (`--scale-users`, `--scale-posts`),
  seeded with COPY once and kept (`megapolis_bench_tpl_<key>`, the key made of the schema's
  Alembic head and the sizes; templates of other keys are dropped); the deep pages' cursors come
  from the API itself, by following `next_cursor` from the first page to the last;
- starts the servers, each uvicorn with 1 worker pinned to CPU 0: the API as in production
  (`manage.py run --no-reload`, APP_ENV=production, access log on) once with
  METRICS_ENABLED=true and once with METRICS_ENABLED=false (`--metrics`), R1 (bare FastAPI,
  constant JSON) and R2 (`bench/ref_asyncpg.py`: bare FastAPI + PyJWT + raw asyncpg doing the
  same work as each route: the caller's read, then the route's own queries);
- pins wrk and PostgreSQL to CPU 1, waits for a quiet machine, runs every target `--rounds`
  times interleaved (each route right after its reference), and reports medians of req/s,
  p50/p99 latency and server CPU µs/request, then checks p99 <= 3 x p50 and 0 errors;
- prints, last, `bench: root=R auth_me=R ... users_list_100k=R depth_cost=D` (ratios to R1 / R2,
  metrics on; `depth_cost`: the API's p50 on the page ~1,000,000 deep ÷ its p50 on the first page
  of 50,000 posts), after `bench (metrics off): ...` when both configurations ran.

Interrupted (Ctrl-C, SIGTERM), it stops its servers and drops its database before exiting.

Needs wrk (Debian/Ubuntu: `sudo apt-get install wrk`; macOS: `brew install wrk`) and taskset
(util-linux). Without taskset it runs unpinned and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
from psycopg import sql

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from app.config import Settings  # noqa: E402
from app.security import issue_token  # noqa: E402

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
USERS = 10_000
POSTS = 50_000
SCALE_USERS = 100_000
SCALE_POSTS = 1_000_000
SEED_VERSION = 1  # bump when the seed's rows change: a new template key
TEMPLATE_PREFIX = "megapolis_bench_tpl_"
WALK_LIMIT = 100  # rows per page while following next_cursor to the deep pages
DEEP_PAGES = 50  # distinct deep cursors the load picks from
POST_BODY = "A few sentences of a post. " * 10
TOKENS = 1_000
STAMP = "bench-stamp"
SERVER_CPU = "0"
LOAD_CPU = "1"


@dataclass(frozen=True)
class SeededUser:
    """A user as `create_database` seeds it, for `issue_token`."""

    id: int
    security_stamp: str = STAMP

    @property
    def email(self) -> str:
        return f"user{self.id}@example.com"


@dataclass(frozen=True)
class Load:
    """What wrk sends: a random path and token from the lists, the same body each time except
    that `{n}` in it becomes a random number (so that every PATCH really changes the row)."""

    method: str
    paths: list[str]
    tokens: list[str]
    body: str | None = None

    def lua(self) -> str:
        body_lua = json.dumps(self.body) if self.body is not None else "nil"
        return f"""
local paths = {lua_table(self.paths)}
local tokens = {lua_table(self.tokens)}
local body = {body_lua}
local headers = {{}}
if body then headers["Content-Type"] = "application/json" end
request = function()
  local token = tokens[math.random(#tokens)]
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  local text = body and (body:gsub("{{n}}", tostring(math.random(1000000000)))) or nil
  return wrk.format("{self.method}", paths[math.random(#paths)], headers, text)
end
"""

    def sample(self) -> tuple[str, dict[str, str], bytes | None]:
        """The first request of the load, for `check_answers`."""
        headers = {"Authorization": f"Bearer {self.tokens[0]}"} if self.tokens[0] else {}
        if self.body is None:
            return self.paths[0], headers, None
        headers["Content-Type"] = "application/json"
        return self.paths[0], headers, self.body.replace("{n}", "1").encode()


@dataclass
class Target:
    name: str
    key: str  # the name in the ratio line
    server: str  # "api", "api_off" (metrics off), "r1" or "r2"
    load: Load
    lua: str = ""
    reference: Target | None = None  # what the ratio is taken against (None: a reference)
    runs: list[dict[str, float]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds_by_pid(pids).values())


def cpu_seconds_by_pid(pids: list[int]) -> dict[int, float]:
    """CPU seconds each process has used so far (processes already gone are left out)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        seconds[pid] = (int(parts[11]) + int(parts[12])) / ticks
    return seconds


def cpu_used_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings by the processes alive at the second: a process
    that started in between counts whole (the API's pool opens its overflow connections, new
    PostgreSQL backends, once wrk starts), one gone by then is not subtracted."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def descendants(pid: int) -> list[int]:
    result = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return result
    for child in children:
        result.extend(descendants(int(child)))
    return result


def postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def wait_for_quiet(max_wait: float, threshold_cores: float = 0.10) -> float:
    """Wait until the machine's busy CPU is under `threshold_cores`; returns the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, total0 = cpu_times()
        time.sleep(1.0)
        busy1, total1 = cpu_times()
        cores = (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1)
        if cores < threshold_cores or time.monotonic() > deadline:
            return cores


def pin(pids: list[int], cpus: str) -> None:
    for pid in pids:
        command = ["taskset", "-a", "-p", "-c", cpus, str(pid)]
        subprocess.run(command, capture_output=True, check=False)


def lua_table(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def parse_wrk(output: str) -> dict[str, float]:
    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": float(total.group(1)) if total else 0.0,
        "p50": latency_ms("50"),
        "p99": latency_ms("99"),
        "errors": float(errors),
    }


# The ratio line's keys, in its order: (key, method and path as the table shows them).
ROUTES = [
    ("root", "GET /"),
    ("auth_me", "GET /auth/me"),
    ("users_me", "GET /api/v1/users/me"),
    ("user_by_id", "GET /api/v1/users/{id} (superuser)"),
    ("users_list", "GET /api/v1/users/ (page of 20)"),
    ("posts_list", "GET /api/v1/posts/ (first page of 20)"),
    ("patch_me", "PATCH /api/v1/users/me"),
    ("post_create", "POST /api/v1/posts/"),
    ("posts_list_1m", "GET /api/v1/posts/ (cursor page {depth} deep)"),
    ("users_list_100k", "GET /api/v1/users/ (cursor page {depth} deep)"),
]
SCALE_KEYS = frozenset({"posts_list_1m", "users_list_100k"})  # served from the scale database
MAX_DEPTH_COST = 1.2  # the deep page's p50 at most this × the first page's (the contract)
TARGET_RATIO = 0.70  # issue 8: every authenticated route at least this × its same-work reference
MAX_TAIL = 3.0  # p99 at most this × p50 on every row


class Interrupted(Exception):
    """SIGTERM received: unwind through `finally` (servers stopped, database dropped)."""


def raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
        self.admin_url = os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        self.database = f"megapolis_bench_{os.getpid()}"
        # The rows at scale run on their own database, copied from a kept template.
        self.scale = bool(SCALE_KEYS & set(args.targets))
        self.scale_database = f"{self.database}_scale"
        self.building: str | None = None  # a template being seeded (dropped if interrupted)
        self.template = ""  # the scale database's template
        self.servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="megapolis-bench-"))
        self.metrics_modes = ["off", "on"] if args.metrics == "both" else [args.metrics]
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)

    # --- database -------------------------------------------------------------------------
    def db_url(self, driver: str, database: str | None = None) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        password = f":{info['password']}" if info.get("password") else ""
        host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
        scheme = "postgresql" if driver == "" else f"postgresql+{driver}"
        name = database or self.database
        return f"{scheme}://{info.get('user', 'postgres')}{password}@{host}:{port}/{name}"

    def admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self) -> None:
        self.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        print(f"created database {self.database}", flush=True)
        self.seed(self.database, USERS, POSTS)

    def seed(self, database: str, users: int, posts: int) -> None:
        """Migrate `database`, then COPY in `users` users (id 1 a superuser) and `posts` posts
        by random authors, each at its own second of the last year."""
        env = {
            **os.environ,
            "DATABASE_URL": self.db_url("asyncpg", database),
            "JWT_SECRET_KEY": SECRET,
        }
        subprocess.run(
            [sys.executable, "manage.py", "upgrade"],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        rng = random.Random(7)
        with psycopg.connect(self.db_url("", database)) as conn, conn.cursor() as cur:
            with cur.copy(
                "COPY users (email, full_name, is_active, is_superuser, security_stamp, "
                "created_at, updated_at) FROM STDIN"
            ) as copy:
                for i in range(1, users + 1):
                    copy.write_row(
                        (f"user{i}@example.com", f"User {i}", True, i == 1, STAMP, "now()", "now()")
                    )
            now = datetime.now(timezone.utc)
            with cur.copy(
                "COPY posts (title, body, author_id, created_at, updated_at) FROM STDIN"
            ) as copy:
                for i in range(1, posts + 1):
                    created = now - timedelta(seconds=rng.randrange(365 * 86400))
                    author = rng.randint(1, users)
                    copy.write_row((f"Post {i}", POST_BODY, author, created, created))
            conn.commit()
        with psycopg.connect(self.db_url("", database), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")

    def scale_template(self) -> str:
        """The template of the scale database, seeded once for this schema and these sizes."""
        # Imported here: only a run at scale needs Alembic's view of the migrations.
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        heads = ScriptDirectory.from_config(Config(str(PROJECT_ROOT / "alembic.ini"))).get_heads()
        users, posts = self.args.scale_users, self.args.scale_posts
        key = json.dumps([sorted(heads), users, posts, SEED_VERSION, POST_BODY, STAMP])
        template = TEMPLATE_PREFIX + sha256(key.encode()).hexdigest()[:16]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (TEMPLATE_PREFIX + "%",),
                )
            ]
        for stale in names:
            if stale != template and not stale.endswith("_building"):
                print(f"dropping the template of another schema or size: {stale}", flush=True)
                self.admin(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(stale))
                )
        if template in names:
            print(f"using the kept template {template}", flush=True)
            return template
        # Seeded under another name and renamed when complete: an interrupted seed leaves no
        # template that looks ready.
        self.building = f"{template}_{os.getpid()}_building"
        started = time.monotonic()
        print(f"seeding {users:,} users and {posts:,} posts into {template} (once)", flush=True)
        self.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.building)))
        self.seed(self.building, users, posts)
        try:
            self.admin(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(self.building), sql.Identifier(template)
                )
            )
        except psycopg.errors.DuplicateDatabase:  # another run made it meanwhile
            self.drop(self.building)
        self.building = None
        print(f"seeded {template} in {time.monotonic() - started:.0f} s", flush=True)
        return template

    def create_scale_database(self) -> None:
        template = self.template = self.scale_template()
        started = time.monotonic()
        self.admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(self.scale_database), sql.Identifier(template)
            )
        )
        print(
            f"created database {self.scale_database} from {template} "
            f"in {time.monotonic() - started:.0f} s",
            flush=True,
        )

    def drop(self, database: str) -> None:
        self.admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )

    def drop_database(self) -> None:
        for database in (self.database, self.scale_database, self.building):
            if database is not None:
                self.drop(database)

    # --- servers --------------------------------------------------------------------------
    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        port = free_port()
        command = [c.replace("{port}", str(port)) for c in command]
        if self.pinned:
            command = ["taskset", "-c", SERVER_CPU, *command]
        log = (RESULTS_DIR / f"{name}.log").open("wb")
        # Its own session: a Ctrl-C in the terminal reaches only this script, which stops the
        # servers itself (in order, after wrk), and `os.killpg` reaches anything they started.
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.servers[name] = (process, port)
        print(f"started {name} (pid {process.pid}) on port {port}", flush=True)

    def start_servers(self) -> None:
        databases = [("", self.database)]
        if self.scale:
            databases.append(("_scale", self.scale_database))
        uvicorn = [sys.executable, "-m", "uvicorn", "--port", "{port}", "--no-access-log"]
        uvicorn += ["--log-level", "warning"]
        for suffix, database in databases:
            for mode in self.metrics_modes:
                api_env = {
                    "APP_ENV": "production",
                    "JWT_SECRET_KEY": SECRET,
                    "DATABASE_URL": self.db_url(self.args.driver, database),
                    "LOG_LEVEL": "INFO",
                    "METRICS_ENABLED": "true" if mode == "on" else "false",
                }
                self.start(
                    ("api" if mode == "on" else "api_off") + suffix,
                    [sys.executable, "manage.py", "run", "--no-reload", "--port", "{port}"],
                    api_env,
                )
            if not suffix:
                self.start("r1", [*uvicorn, "bench.ref_bare:app"], {})
            self.start(
                "r2" + suffix,
                [*uvicorn, "bench.ref_asyncpg:app"],
                {"JWT_SECRET_KEY": SECRET, "BENCH_ASYNCPG_DSN": self.db_url("", database)},
            )
        deadline = time.monotonic() + 60
        for name, (process, port) in self.servers.items():
            probe = "/healthz" if name.startswith("api") else "/"
            probe = "/openapi.json" if name.startswith("r2") else probe
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{name} server exited; see {RESULTS_DIR / (name + '.log')}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} server did not start")
                time.sleep(0.2)

    def stop_servers(self) -> None:
        for process, _ in self.servers.values():
            if process.poll() is None:
                signal_group(process, signal.SIGTERM)
        for name, (process, _) in self.servers.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 20 s: killed", flush=True)
                signal_group(process, signal.SIGKILL)
                process.wait()

    # --- targets --------------------------------------------------------------------------
    def targets(self) -> list[Target]:
        """Per route key: its reference, then the API with metrics off, then on (interleaved:
        a route runs right after its reference, under the same conditions)."""
        settings = Settings(_env_file=None, JWT_SECRET_KEY=SECRET, APP_ENV="production")
        rng = random.Random(42)
        user_ids = rng.sample(range(2, USERS + 1), TOKENS)
        tokens = [issue_token(settings, SeededUser(i)).token for i in user_ids]
        admin = issue_token(settings, SeededUser(1)).token
        ids = [f"/api/v1/users/{i}" for i in rng.sample(range(2, USERS + 1), 2000)]
        user_pages = [
            f"/api/v1/users/?limit=20&offset={rng.randrange(0, USERS - 20)}" for _ in range(500)
        ]
        loads = {
            "root": Load("GET", ["/"], [""]),
            "auth_me": Load("GET", ["/auth/me"], tokens),
            "users_me": Load("GET", ["/api/v1/users/me"], tokens),
            "user_by_id": Load("GET", ids, [admin]),
            "users_list": Load("GET", user_pages, [admin]),
            # The first page: what a feed's readers ask for most, and depth_cost's yardstick.
            "posts_list": Load("GET", ["/api/v1/posts/?limit=20"], tokens),
            "patch_me": Load("PATCH", ["/api/v1/users/me"], tokens, '{"full_name": "Bench {n}"}'),
            "post_create": Load(
                "POST", ["/api/v1/posts/"], tokens, '{"title": "Bench {n}", "body": "Hello"}'
            ),
        }
        # At scale the API's load asks for pages by its own cursors, the reference's by the
        # last row of the page before (the same keyset query).
        reference_loads = dict(loads)
        depths: dict[str, int] = {}
        # Callers who exist in the scale database too.
        scale_tokens = [
            token for i, token in zip(user_ids, tokens, strict=True) if i <= self.args.scale_users
        ] or [admin]
        if "posts_list_1m" in self.args.targets:
            pages = self.deep_pages("/api/v1/posts/", tokens[0])
            loads["posts_list_1m"] = Load(
                "GET", [f"/api/v1/posts/?limit=20&cursor={c}" for c, _, _ in pages], scale_tokens
            )
            reference_loads["posts_list_1m"] = Load(
                "GET",
                [
                    "/api/v1/posts/?"
                    + urlencode(
                        {"limit": 20, "after_created_at": row["created_at"], "after_id": row["id"]}
                    )
                    for _, row, _ in pages
                ],
                scale_tokens,
            )
            depths["posts_list_1m"] = pages[len(pages) // 2][2]
        if "users_list_100k" in self.args.targets:
            pages = self.deep_pages("/api/v1/users/", admin)
            loads["users_list_100k"] = Load(
                "GET", [f"/api/v1/users/?limit=20&cursor={c}" for c, _, _ in pages], [admin]
            )
            reference_loads["users_list_100k"] = Load(
                "GET",
                [f"/api/v1/users/?limit=20&after_id={row['id']}" for _, row, _ in pages],
                [admin],
            )
            depths["users_list_100k"] = pages[len(pages) // 2][2]
        targets: list[Target] = []
        for key, label in ROUTES:
            if key not in self.args.targets:
                continue
            load = loads[key]
            suffix = "_scale" if key in SCALE_KEYS else ""
            if key in depths:
                label = label.format(depth=f"~{depths[key]:,}")
            if key == "root":
                reference = Target("R1 bare FastAPI", key, "r1", load)
            else:
                reference = Target(f"R2 {key}", key, "r2" + suffix, reference_loads[key])
            targets.append(reference)
            for mode in self.metrics_modes:
                server = ("api" if mode == "on" else "api_off") + suffix
                name = label if mode == "on" else f"{label} [metrics off]"
                targets.append(Target(name, key, server, load, reference=reference))
        for number, target in enumerate(targets):
            path = self.workdir / f"{number}-{target.server}-{target.key}.lua"
            path.write_text(target.load.lua())
            target.lua = str(path)
        return targets

    def deep_pages(self, path: str, token: str) -> list[tuple[str, dict[str, Any], int]]:
        """The API's cursors of the deepest pages of a list on the scale database, each with
        the row before it and how many rows come before it: got by following `next_cursor`
        from the first page to the last, `WALK_LIMIT` rows a page (a cursor is opaque: only
        the API makes one). Kept beside the results for the template they were walked on, and
        walked again when the API no longer takes them (a new cursor format)."""
        port = self.servers["api_scale" if "on" in self.metrics_modes else "api_off_scale"][1]
        kept = RESULTS_DIR / f"deep-pages-{self.template}-{path.strip('/').replace('/', '-')}.json"
        if kept.is_file():
            pages = [(c, row, depth) for c, row, depth in json.loads(kept.read_text())]
            answer = httpx.get(
                f"http://127.0.0.1:{port}{path}",
                params={"limit": 1, "cursor": pages[0][0]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            if answer.is_success:
                print(f"using the kept cursors of {path} ({kept.name})", flush=True)
                return pages
        pages = self.walk(port, path, token)
        kept.write_text(json.dumps(pages))
        return pages

    def walk(self, port: int, path: str, token: str) -> list[tuple[str, dict[str, Any], int]]:
        started = time.monotonic()
        pages: list[tuple[str, dict[str, Any], int]] = []
        seen = 0
        params: dict[str, Any] = {"limit": WALK_LIMIT}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as client:
            while True:
                response = client.get(path, params=params)
                if not response.is_success:
                    raise SystemExit(
                        f"walking {path}: {response.status_code} {response.text[:200]}"
                    )
                page = response.json()
                seen += len(page["items"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                pages.append((cursor, page["items"][-1], seen))
                pages = pages[-(DEEP_PAGES + 1) :]
                params = {"limit": WALK_LIMIT, "cursor": cursor}
        print(
            f"walked {path} to its last page ({seen:,} rows) in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        # The last cursor's page may be short: the ones before it lead to full pages.
        deep = pages[:-1] or pages
        if not deep:
            raise SystemExit(f"{path} has a single page on the scale database")
        return deep

    def check_answers(self, targets: list[Target]) -> None:
        """Every target answers 2xx before it is measured (a fast 401 would be a lie)."""
        for target in targets:
            port = self.servers[target.server][1]
            path, headers, body = target.load.sample()
            response = httpx.request(
                target.load.method,
                f"http://127.0.0.1:{port}{path}",
                headers=headers,
                content=body,
            )
            if not response.is_success:
                raise SystemExit(f"{target.name}: {response.status_code} {response.text[:200]}")

    def run_wrk(self, target: Target, duration: float) -> dict[str, float]:
        process, port = self.servers[target.server]
        url = f"http://127.0.0.1:{port}"
        command = ["wrk", f"-t{self.args.threads}", f"-c{self.args.connections}"]
        command += [f"-d{max(1, round(duration))}s", "--latency", "-s", target.lua, url]
        if self.pinned:
            command = ["taskset", "-c", LOAD_CPU, *command]
        server_pids = descendants(process.pid)
        server0 = process_cpu_seconds(server_pids)
        pg0 = cpu_seconds_by_pid(postgres_pids())
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0, total0 = cpu_times()
        started = time.monotonic()
        output = run_wrk_command(command)
        elapsed = time.monotonic() - started
        busy1, total1 = cpu_times()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = process_cpu_seconds(server_pids) - server0
        pg_cpu = cpu_used_between(pg0, cpu_seconds_by_pid(postgres_pids()))
        wrk_cpu = (children1.ru_utime - children0.ru_utime) + (
            children1.ru_stime - children0.ru_stime
        )
        machine = (os.cpu_count() or 1) * elapsed * (busy1 - busy0) / max(total1 - total0, 1)
        result = parse_wrk(output)
        result["server_us"] = 1e6 * server_cpu / max(result["requests"], 1)
        # CPU used by anything but the server, wrk and PostgreSQL (irq/softirq included).
        result["foreign_cores"] = max(0.0, (machine - server_cpu - pg_cpu - wrk_cpu) / elapsed)
        return result

    def measure(self, targets: list[Target]) -> None:
        print(f"measuring {len(targets)} targets × {self.args.rounds} rounds", flush=True)
        for round_number in range(1, self.args.rounds + 1):
            for target in targets:
                self.run_wrk(target, self.args.warmup)  # warm-up, discarded
                for attempt in range(3):
                    quiet = wait_for_quiet(self.args.quiet_wait)
                    result = self.run_wrk(target, self.args.duration)
                    result["quiet_before"] = quiet
                    if result["foreign_cores"] <= self.args.max_foreign or attempt == 2:
                        break
                    print(f"  noisy run ({result['foreign_cores']:.2f} foreign cores), retrying")
                target.runs.append(result)
                print(
                    f"round {round_number} {target.name:50s} {result['rps']:9.0f} req/s "
                    f"p50 {result['p50']:6.1f} ms p99 {result['p99']:6.1f} ms "
                    f"{result['server_us']:6.0f} µs/req errors {result['errors']:.0f} "
                    f"foreign {result['foreign_cores']:.2f}",
                    flush=True,
                )

    def report(self, targets: list[Target]) -> None:
        def median(target: Target, key: str) -> float:
            return statistics.median(run[key] for run in target.runs)

        print()
        print(
            f"Medians of {self.args.rounds} interleaved runs, wrk -t{self.args.threads} "
            f"-c{self.args.connections} -d{self.args.duration:g}s, "
            + ("server on CPU 0, wrk + PostgreSQL on CPU 1" if self.pinned else "UNPINNED")
            + f", driver {self.args.driver}"
        )
        print(f"| {'target':50s} | req/s | p50 ms | p99 ms | µs/req | errors | ratio |")
        print("|" + "---|" * 7)
        ratios: dict[str, dict[str, float]] = {"on": {}, "off": {}}
        p50s: dict[str, dict[str, float]] = {"on": {}, "off": {}}  # the API's, by route key
        long_tails: list[str] = []
        with_errors: list[str] = []
        below_target: list[str] = []
        for target in targets:
            rps, p50, p99 = median(target, "rps"), median(target, "p50"), median(target, "p99")
            ratio_text = ""
            if target.reference is not None:
                reference = median(target.reference, "rps")
                ratio = rps / reference if reference else 0.0
                mode = "off" if target.server.startswith("api_off") else "on"
                ratios[mode][target.key] = ratio
                p50s[mode][target.key] = p50
                ratio_text = f"{ratio:.2f} × {target.reference.server.upper()}"
                if target.key != "root" and ratio < TARGET_RATIO:
                    below_target.append(f"{target.name} ({ratio:.2f})")
            errors = sum(run["errors"] for run in target.runs)
            if not p99 <= MAX_TAIL * p50:
                long_tails.append(f"{target.name} (p99 {p99:.1f} ms, p50 {p50:.1f} ms)")
            if errors:
                with_errors.append(f"{target.name} ({errors:.0f})")
            print(
                f"| {target.name:50s} | {rps:,.0f} | {p50:.1f} | {p99:.1f} | "
                f"{median(target, 'server_us'):.0f} | {errors:.0f} | {ratio_text} |"
            )
        (RESULTS_DIR / "last.json").write_text(
            json.dumps({t.name: t.runs for t in targets}, indent=1)
        )
        print()
        print(
            f"check p99 <= {MAX_TAIL:g} × p50 on every row: "
            + ("yes" if not long_tails else "NO: " + ", ".join(long_tails))
        )
        print("check 0 errors: " + ("yes" if not with_errors else "NO: " + ", ".join(with_errors)))
        print(
            f"check authenticated routes >= {TARGET_RATIO:.2f} × their reference: "
            + ("yes" if not below_target else "NO: " + ", ".join(below_target))
        )
        depth_costs = {
            mode: p50s[mode]["posts_list_1m"] / p50s[mode]["posts_list"]
            for mode in self.metrics_modes
            if {"posts_list_1m", "posts_list"} <= p50s[mode].keys() and p50s[mode]["posts_list"]
        }
        if depth_costs:
            print(
                f"check depth_cost <= {MAX_DEPTH_COST:g} (p50 of the page ~1,000,000 deep ÷ p50 "
                "of the first page of 50,000 posts): "
                + ", ".join(
                    f"{'metrics ' + mode}: {cost:.2f} "
                    + ("yes" if cost <= MAX_DEPTH_COST else "NO")
                    for mode, cost in depth_costs.items()
                )
            )
        print()
        for mode in self.metrics_modes:
            line = " ".join(f"{key}={ratio:.2f}" for key, ratio in ratios[mode].items())
            if mode in depth_costs:
                line += f" depth_cost={depth_costs[mode]:.2f}"
            print(("bench: " if mode == "on" else "bench (metrics off): ") + line)

    def run(self) -> None:
        if shutil.which("wrk") is None:
            raise SystemExit(
                "wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu) "
                "or `brew install wrk` (macOS)"
            )
        if not self.pinned:
            print("taskset not available (or 1 CPU): running UNPINNED")
        original_pg_affinity = "0-" + str((os.cpu_count() or 1) - 1)
        # Ctrl-C raises KeyboardInterrupt; SIGTERM (a CI timeout, `kill`) the same way out.
        signal.signal(signal.SIGTERM, raise_interrupted)
        try:
            print(f"seeding {USERS:,} users and {POSTS:,} posts into {self.database}", flush=True)
            self.create_database()
            if self.scale:
                self.create_scale_database()
            if self.pinned:
                pin(postgres_pids(), LOAD_CPU)
            self.start_servers()
            targets = self.targets()
            self.check_answers(targets)
            self.measure(targets)
            self.report(targets)
        except (KeyboardInterrupt, Interrupted) as exc:
            print(f"interrupted ({type(exc).__name__} {exc}): cleaning up", flush=True)
            raise SystemExit(130) from None
        finally:
            # A second Ctrl-C must not cut the cleanup short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.stop_servers()
            if self.pinned:
                pin(postgres_pids(), original_pg_affinity)
            self.drop_database()
            print(f"stopped the servers, dropped {self.database}", flush=True)
            shutil.rmtree(self.workdir, ignore_errors=True)


def run_wrk_command(command: list[str], attempts: int = 3) -> str:
    """wrk's output. On a loaded machine starting it can fail now and then (taskset: exit 126,
    a failed exec): try again, and say so; a wrk that keeps failing stops the run."""
    for attempt in range(1, attempts + 1):
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode == 0:
            return completed.stdout
        failure = f"wrk failed (exit {completed.returncode}): {completed.stderr.strip()[:300]}"
        if attempt == attempts:
            raise SystemExit(failure)
        print(f"  {failure}; trying again", flush=True)
    raise AssertionError("unreachable")


def signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Signal a server and everything it started (it leads its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--driver", choices=["asyncpg", "psycopg"], default="asyncpg")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="max wait for quiet CPU")
    parser.add_argument("--max-foreign", type=float, default=0.10, help="foreign cores allowed")
    parser.add_argument(
        "--scale-posts",
        type=int,
        default=SCALE_POSTS,
        help="posts in the scale database (posts_list_1m's page is about this deep)",
    )
    parser.add_argument(
        "--scale-users",
        type=int,
        default=SCALE_USERS,
        help="users in the scale database (users_list_100k's page is about this deep)",
    )
    parser.add_argument(
        "--metrics",
        choices=["both", "on", "off"],
        default="both",
        help="run the API with METRICS_ENABLED on, off, or both (two ratio lines)",
    )
    keys = [key for key, _ in ROUTES]
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=keys,
        default=keys,
        metavar="KEY",
        help=f"measure only these routes (with their references): {' '.join(keys)}",
    )
    Bench(parser.parse_args()).run()


if __name__ == "__main__":
    main()
