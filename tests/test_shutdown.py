"""`manage.py run` stopped with SIGTERM (what Docker, Kubernetes and systemd send): requests in
flight are finished and answered, then the process exits 0 — with one process or several workers.

The servers are real subprocesses. A request is kept in flight without any test-only endpoint:
either its body is still arriving, or the database it waits on is stalled (tests/tcp_proxy.py).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PostgresServer, make_settings, migrate
from tests.processes import STARTUP_LIMIT, RunningServer, running_server
from tests.tcp_proxy import TCPProxy
from tests.tokens import token_for

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

EXIT_LIMIT = 20.0


class Served(RunningServer):
    def wait_until_refusing(self, limit: float = 10.0) -> None:
        """Uvicorn closes its listening socket first thing on SIGTERM: a refused connection
        means the shutdown has begun."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except ConnectionRefusedError:
                return
            except OSError:
                pass
            time.sleep(0.02)
        pytest.fail(f"still accepting connections {limit} s after SIGTERM:\n{self.text()}")

    def terminate_and_wait(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=EXIT_LIMIT)


@contextmanager
def serve(database_url: str, *extra: str) -> Iterator[Served]:
    with running_server(database_url, *extra, kind=Served) as served:
        yield served


def read_http_response(client: socket.socket) -> tuple[int, dict[str, object]]:
    """Status and JSON body of the one response on a `Connection: close` socket."""
    response = b""
    while chunk := client.recv(65536):
        response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_sigterm_finishes_requests_in_flight(postgres_server: PostgresServer) -> None:
    """Two requests in flight when SIGTERM arrives, neither from a test-only endpoint: a GET
    waiting on a stalled database, and a POST whose body has not all arrived yet. The server
    stops accepting connections, waits for both, answers both, then exits 0."""
    name = postgres_server.create_database("megapolis_sigterm")
    try:
        direct_url = postgres_server.url_for(name)
        migrate(make_settings(direct_url))
        direct = make_url(direct_url)
        libpq_url = direct.set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(libpq_url) as conn:
            row = conn.execute(
                "INSERT INTO users (email, is_active, is_superuser, security_stamp, created_at,"
                " updated_at) VALUES ('inflight@example.com', true, true, 'test-stamp', now(),"
                " now()) RETURNING id"
            ).fetchone()
        assert row is not None
        token = token_for(make_settings(direct_url), row[0], "inflight@example.com", "test-stamp")
        headers = {"Authorization": f"Bearer {token}"}
        body = json.dumps({"email": "late-body@example.com"}).encode()
        post_head = (
            "POST /api/v1/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()

        with TCPProxy(upstream_port=direct.port or 5432) as proxy:
            proxied = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
            with (
                serve(proxied) as served,
                ThreadPoolExecutor(1) as pool,
                socket.create_connection(("127.0.0.1", served.port)) as slow_client,
            ):
                me = f"{served.base_url}/api/v1/users/me"
                assert httpx.get(me, headers=headers).status_code == 200  # a pooled connection
                slow_client.settimeout(EXIT_LIMIT)
                slow_client.sendall(post_head + body[:10])  # headers, and a part of the body

                proxy.stall()
                waiting_on_db = pool.submit(httpx.get, me, headers=headers, timeout=30)
                time.sleep(0.3)  # the GET now waits on the database, the POST on its body
                assert not waiting_on_db.done()
                served.process.send_signal(signal.SIGTERM)
                served.wait_until_refusing()
                assert not waiting_on_db.done(), "the in-flight request was cut short"

                slow_client.sendall(body[10:])
                proxy.restore()  # the database answers again: both requests can finish
                response = waiting_on_db.result(timeout=EXIT_LIMIT)
                assert response.status_code == 200, response.text
                assert response.json()["email"] == "inflight@example.com"
                status, created = read_http_response(slow_client)
                assert (status, created["email"]) == (201, "late-body@example.com"), created
                assert served.process.wait(timeout=EXIT_LIMIT) == 0, served.text()
        assert "Shutting down" in served.text()
        assert "Traceback" not in served.text()
        with psycopg.connect(libpq_url) as conn:
            count = conn.execute("SELECT count(*) FROM users WHERE email = %s", [created["email"]])
            assert count.fetchone() == (1,)
    finally:
        postgres_server.drop_database(name)


def worker_pids(parent: int) -> list[int]:
    """Uvicorn's workers: the parent's children started by multiprocessing's spawn."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_serve_and_stop_cleanly_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}"
    migrate(make_settings(url))
    with serve(url, "--workers", "2") as served:
        # /healthz answers as soon as one worker serves; the other may still be importing the
        # app, before uvicorn handles SIGTERM in it. Both must have finished starting up.
        deadline = time.monotonic() + STARTUP_LIMIT
        while (
            len(workers := worker_pids(served.process.pid)) != 2
            or served.text().count("Application startup complete.") != 2
        ):
            assert time.monotonic() < deadline, f"workers: {workers}\n{served.text()}"
            time.sleep(0.1)
        with httpx.Client(base_url=served.base_url) as http:
            for _ in range(20):  # new connections, spread over the workers by the kernel
                assert http.get("/readyz", headers={"Connection": "close"}).status_code == 200
        assert served.terminate_and_wait() == 0, served.text()
        # The supervisor waited for its workers: none is left behind.
        assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []
        assert "died" not in served.text()  # no worker was killed and restarted on the way
        assert "Traceback" not in served.text()
