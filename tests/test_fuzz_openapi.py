"""Schemathesis against the app's own OpenAPI schema: every operation the schema lists, with
valid and with invalid data, as a superuser, as a regular user and as nobody, on both databases.

Each answer must not be a server error, and its status code, content type and body must be the
ones the schema documents. On top of that: nobody gets a 2xx from a secured operation, and a
regular user gets a 2xx only from its own record (no BOLA, no BFLA, no escalation).

Hypothesis runs derandomized (the same examples on every run, no example database) with no
deadline, in a worker thread; each request goes to the `app` fixture on the test's event loop,
where its database engine lives.

The callers can delete, deactivate or demote themselves mid-run (DELETE /users/{id}, PATCH /me
with `is_superuser: false`): after any request that may have changed them, the admin and a
regular "member" are restored with their fixed ids; path ids are drawn two times out of three
from those two, so the fuzzing reaches the authorized code paths and not only 401s and 404s.
The test fails when it saw no 2xx where one is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.db.database import Database
from app.dependencies import get_current_user, owner_or_superuser, require_superuser
from app.models.post import Post
from app.models.user import User
from app.router import routers_for
from tests.tokens import token_for

Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]

MAX_EXAMPLES = 25
STAMP = "fuzz-stamp"
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
SEND_TIMEOUT_SECONDS = 30
# The stateful run: scenarios, and calls in each (bounded so the test stays well under a minute
# on a loaded 2-core machine).
STATEFUL_SCENARIOS = 30
STATEFUL_STEPS = 6
STATEFUL_SECONDS = 12  # per caller and database: the four runs stay under a minute
STATEFUL_MIN_SCENARIOS = 8  # what a loaded machine must still get through in that time
BASE_URL = "http://testserver"

# Operations that cannot answer 2xx here: Supabase is not configured in the tests, so they give
# their documented 503. (The database is up: a 503 from anything else is a failure.)
NEEDS_EXTERNAL_SERVICE = {"GET /auth/verify_supabase_token"}
# Operations no caller here can get a 2xx from: the Supabase webhook answers 404 without
# SUPABASE_WEBHOOK_SECRET, which these tests do not set (tests/test_supabase_webhook.py does).
NO_SUCCESS_HERE = NEEDS_EXTERNAL_SERVICE | {"POST /auth/supabase/webhook"}
CALLERS = ["superuser", "member", "anonymous"]


def route_dependencies(dependant: Dependant) -> set[Any]:
    """Every dependency callable a route runs, however deep."""
    calls = set()
    for sub in dependant.dependencies:
        calls.add(sub.call)
        calls |= route_dependencies(sub)
    return calls


def owner_checked(call: Any) -> bool:
    """A dependency made by `owner_or_superuser` (its row, for its owner or a superuser)."""
    return str(getattr(call, "__qualname__", "")).startswith(f"{owner_or_superuser.__name__}.")


def access_rules(app: FastAPI) -> tuple[set[str], set[str]]:
    """Read from the routes' dependencies (so a new resource needs no edit here): the
    operations a regular user may succeed at (any row), and those it may succeed at only on a
    row it owns (`owner_or_superuser`). The rest need a superuser (`Superuser`), or no token."""
    self_service: set[str] = set()
    own_rows: set[str] = set()
    for router, prefix in routers_for(app.state.settings):
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            calls = route_dependencies(route.dependant)
            if get_current_user not in calls or require_superuser in calls:
                continue
            owned = any(owner_checked(call) for call in calls)
            for method in route.methods or ():
                (own_rows if owned else self_service).add(f"{method} {prefix}{route.path_format}")
    return self_service, own_rows


def test_access_rules_read_from_the_routes(app: FastAPI) -> None:
    """The derivation above, on routes whose rules the contract states."""
    self_service, own_rows = access_rules(app)
    assert {"GET /auth/me", "POST /api/v1/posts/", "GET /api/v1/posts/{post_id}"} <= self_service
    assert {"PATCH /api/v1/posts/{post_id}", "DELETE /api/v1/users/{user_id}"} <= own_rows
    assert "GET /api/v1/users/{user_id}" in own_rows
    superuser_only = {"GET /api/v1/users/", "POST /api/v1/users/{user_id}/revoke-tokens"}
    assert not superuser_only & (self_service | own_rows)


def label_of(operation: Operation) -> str:
    return f"{operation.method.upper()} {operation.path}"


def no_server_error(ctx: CheckContext, response: Response, case: AnyCase) -> bool | None:
    """`not_a_server_error`, except the documented 503 of an operation whose external service
    is not configured here."""
    if response.status_code == 503 and label_of(case.operation) in NEEDS_EXTERNAL_SERVICE:
        return None
    return not_a_server_error(ctx, response, case)


CHECKS: list[CheckFunction] = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzWorld:
    """The two users every example starts from, who is calling, and what the fuzzing saw."""

    app: FastAPI
    client: httpx.AsyncClient
    caller: str
    secured: set[str] = field(default_factory=set)
    # What a regular user may succeed at: any row / only its own rows (`access_rules`).
    self_service: set[str] = field(default_factory=set)
    own_rows: set[str] = field(default_factory=set)
    admin_id: int = 0
    member_id: int = 0
    admin_post_id: int = 0
    admin_post_created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # The last request may have changed the admin or the member (anything but a GET may).
    dirty: bool = False
    admin_email: str = field(default_factory=lambda: f"fuzz-admin-{uuid.uuid4().hex}@example.com")
    member_email: str = field(default_factory=lambda: f"fuzz-member-{uuid.uuid4().hex}@example.com")
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    async def setup(self) -> None:
        database: Database = self.app.state.database
        async with database.sessionmaker() as session:
            admin = await User.create(
                session, email=self.admin_email, is_superuser=True, security_stamp=STAMP
            )
            member = await User.create(session, email=self.member_email, security_stamp=STAMP)
            await session.commit()
            self.admin_id, self.member_id = admin.id, member.id
            # A post that only the admin may change: a member's 2xx on it would be BOLA.
            post = await Post.create(session, author_id=admin.id, title="The admin's post")
            await session.commit()
            self.admin_post_id, self.admin_post_created_at = post.id, post.created_at

    async def restore(self) -> None:
        """Bring back the admin and the member exactly as they were, whatever the last example
        did to them (deleted, deactivated, demoted, renamed)."""
        database: Database = self.app.state.database
        async with database.sessionmaker() as session:
            for user_id, email, is_superuser in (
                (self.admin_id, self.admin_email, True),
                (self.member_id, self.member_email, False),
            ):
                await session.merge(
                    User(
                        id=user_id,
                        email=email,
                        full_name=None,
                        supabase_id=None,
                        is_active=True,
                        is_superuser=is_superuser,
                        security_stamp=STAMP,  # tokens revoked by an example work again
                    )
                )
            await session.flush()
            await session.merge(
                Post(
                    id=self.admin_post_id,
                    author_id=self.admin_id,
                    title="The admin's post",
                    body="",
                    created_at=self.admin_post_created_at,
                )
            )
            await session.commit()

    @property
    def caller_id(self) -> int | None:
        return {"superuser": self.admin_id, "member": self.member_id}.get(self.caller)

    def credentials(self) -> dict[str, str]:
        if self.caller_id is None:
            return {}
        email = self.admin_email if self.caller == "superuser" else self.member_email
        token = token_for(self.app.state.settings, self.caller_id, email, STAMP)
        return {"Authorization": f"Bearer {token}"}

    async def send(self, case: AnyCase) -> httpx.Response:
        if self.dirty:
            await self.restore()
        self.dirty = case.method.upper() != "GET"
        case.headers.pop("Authorization", None)  # case-insensitive
        case.headers.update(self.credentials())
        return await self.client.request(**httpx_arguments(case))


def httpx_arguments(case: AnyCase) -> dict[str, Any]:
    """What schemathesis would pass to `requests`, as arguments of `httpx.AsyncClient.request`."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url=BASE_URL)
    kwargs.pop("timeout", None)
    cookies = kwargs.pop("cookies", None)
    if cookies:
        kwargs["headers"]["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    data = kwargs.pop("data", None)
    if isinstance(data, (bytes, str)):
        kwargs["content"] = data  # a raw body: `data` in requests, `content` in httpx
    elif data is not None:
        kwargs["data"] = data
    unexpected = set(kwargs) - {"method", "url", "headers", "params", "json", "content", "data"}
    assert not unexpected, f"cannot send {unexpected} with httpx: {kwargs}"
    return kwargs


def check_access(world: FuzzWorld, case: AnyCase, response: httpx.Response) -> None:
    """Who may get a 2xx from which operation."""
    if not 200 <= response.status_code < 300:
        return
    label = label_of(case.operation)
    if world.caller == "anonymous":
        assert label not in world.secured, f"{label} answered {response.status_code}"
    if world.caller == "member" and label in world.secured:
        assert label in world.self_service | world.own_rows, f"{label}: {response.text}"
        if label in world.own_rows:
            ids = case.path_parameters or {}
            # The member owns its own record, and every row but the admin's post: it wrote
            # every other one itself during this run.
            own = int(ids.get("user_id", world.member_id)) == world.member_id
            own = own and int(ids.get("post_id", 0)) != world.admin_post_id
            assert own, f"{label} {ids}: {response.text}"
        if response.content:
            assert response.json().get("is_superuser") is not True, response.text


def fuzz_operation(
    world: FuzzWorld, loop: asyncio.AbstractEventLoop, operation: Operation, mode: GenerationMode
) -> None:
    """Run one operation's examples (in a worker thread; requests go to the test's loop)."""
    label = label_of(operation)

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode), known=st.sampled_from([0, 1, 2]))
    def run(case: AnyCase, known: int) -> None:
        if known and "user_id" in (case.path_parameters or {}):
            user_id = world.admin_id if known == 1 else world.member_id
            case.path_parameters = {**(case.path_parameters or {}), "user_id": user_id}
        if known and "post_id" in (case.path_parameters or {}):
            case.path_parameters = {**(case.path_parameters or {}), "post_id": world.admin_post_id}
        future = asyncio.run_coroutine_threadsafe(world.send(case), loop)
        response = future.result(timeout=SEND_TIMEOUT_SECONDS)
        world.statuses[label][response.status_code] += 1
        case.validate_response(response, checks=CHECKS)
        check_access(world, case, response)

    run()


@contextlib.contextmanager
def recorded(failures: list[str], case: AnyCase) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        failures.append(f"{label_of(case.operation)} {case.path_parameters}: {exc}")
        raise


def generation_modes(operation: Operation) -> list[GenerationMode]:
    """Valid data always; invalid data where the operation takes any input to break."""
    inputs = (operation.path_parameters, operation.query, operation.headers)
    if any(len(part) for part in inputs) or operation.body:
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


@pytest.mark.parametrize("caller", CALLERS)
async def test_every_operation_survives_fuzzing(
    app: FastAPI, client: httpx.AsyncClient, caller: str
) -> None:
    document = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"schemathesis cannot read an operation: {result}"
        operations.append(result.ok())
    secured = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
        if spec.get("security")
    }
    self_service, own_rows = access_rules(app)
    world = FuzzWorld(app, client, caller, secured, self_service, own_rows)
    await world.setup()
    loop = asyncio.get_running_loop()

    def fuzz_everything() -> None:
        for operation in operations:
            for mode in generation_modes(operation):
                fuzz_operation(world, loop, operation, mode)

    await asyncio.to_thread(fuzz_everything)

    assert set(world.statuses) == {label_of(operation) for operation in operations}
    for label, seen in world.statuses.items():
        successes = sum(count for status, count in seen.items() if 200 <= status < 300)
        if caller == "superuser" and label not in NO_SUCCESS_HERE:
            assert successes, f"{label}: no 2xx in {dict(seen)}"
        if caller == "member" and label in self_service - NO_SUCCESS_HERE:
            assert successes, f"{label}: no 2xx in {dict(seen)}"
    if caller == "member":
        by_id = world.statuses["GET /api/v1/users/{user_id}"]
        assert by_id[200] and by_id[403], f"own record and others' expected: {dict(by_id)}"


# --- Stateful: sequences of calls linked by what earlier answers returned ---

STATEFUL_SETTINGS = settings(
    max_examples=STATEFUL_SCENARIOS,
    stateful_step_count=STATEFUL_STEPS,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
    phases=[Phase.generate],
)


@pytest.mark.parametrize("caller", ["superuser", "member"])
async def test_stateful_sequences_with_negative_steps_survive(
    app: FastAPI, client: httpx.AsyncClient, caller: str
) -> None:
    """Schemathesis's state machine: each scenario chains operations through the links it
    infers (a created user's id into GET/PATCH/DELETE /users/{id}, a post's into /posts/{id}),
    with valid and invalid steps mixed (its positive and negative modes). The same checks as
    above apply to every step: no server error, the documented answers, and who may get a
    2xx. Bounded: STATEFUL_SCENARIOS scenarios of at most STATEFUL_STEPS steps, within
    STATEFUL_SECONDS."""
    document = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    secured = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
        if spec.get("security")
    }
    self_service, own_rows = access_rules(app)
    world = FuzzWorld(app, client, caller, secured, self_service, own_rows)
    await world.setup()
    loop = asyncio.get_running_loop()
    linked_steps: Counter[str] = Counter()
    failures: list[str] = []
    scenarios = 0

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            nonlocal scenarios
            scenarios += 1

        def call(self, case: AnyCase, **kwargs: Any) -> Response:
            future = asyncio.run_coroutine_threadsafe(world.send(case), loop)
            sent = future.result(timeout=SEND_TIMEOUT_SECONDS)
            world.statuses[label_of(case.operation)][sent.status_code] += 1
            with recorded(failures, case):
                check_access(world, case, sent)
            return Response.from_any(sent)

        def validate_response(
            self, response: Response, case: AnyCase, *args: Any, **kwargs: Any
        ) -> None:
            with recorded(failures, case):
                case.validate_response(response, checks=CHECKS)

        def step(self, input: Any) -> Any:
            if input.transition is not None and input.is_applied:
                linked_steps[label_of(input.case.operation)] += 1
            return super().step(input)

    def run_suites() -> None:
        """Suites of scenarios until STATEFUL_SCENARIOS ran (or the time is up). The database
        outlives a scenario, so a scenario Hypothesis replays can take another shape; it then
        stops the suite (FlakyStrategyDefinition) and, as schemathesis's own runner does, a new
        suite starts with the next seed. A failure is recorded before Hypothesis sees it, so a
        replay cannot hide it."""
        deadline = time.monotonic() + STATEFUL_SECONDS
        for seed in range(STATEFUL_SCENARIOS):
            remaining = STATEFUL_SCENARIOS - scenarios
            if remaining <= 0 or failures or time.monotonic() > deadline:
                return
            suite = settings(STATEFUL_SETTINGS, max_examples=remaining)
            with contextlib.suppress(FlakyStrategyDefinition):
                hypothesis.seed(seed)(Sequences).run(settings=suite)

    await asyncio.to_thread(run_suites)

    assert not failures, "\n".join(failures)
    assert scenarios >= STATEFUL_MIN_SCENARIOS, scenarios
    assert sum(linked_steps.values()), "no step used a value from an earlier answer"
    successes = sum(
        count for seen in world.statuses.values() for status, count in seen.items() if status < 300
    )
    refusals = sum(
        count for seen in world.statuses.values() for status, count in seen.items() if status >= 400
    )
    assert successes and refusals, dict(world.statuses)
    invalid_steps_refused = sum(seen[422] for seen in world.statuses.values())
    # A member is refused (403) before validation on every operation it may not use, and on
    # others' rows (`owner_or_superuser` runs before the body is validated), so whether one of
    # its negative steps lands where validation runs is chance; its validation is covered by
    # test_every_operation_survives_fuzzing (negative data on every operation).
    if caller == "superuser":
        assert invalid_steps_refused, f"no negative step reached validation: {world.statuses}"
