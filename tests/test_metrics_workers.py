"""`manage.py run --workers 2`: one scrape, whichever worker answers it, sees the requests both
workers served (prometheus_client's multiprocess mode, set up by `manage.py run`).

Which worker serves a connection is read from Linux's /proc: the worker process that holds the
server side of that TCP connection.
"""

from __future__ import annotations

import http.client
import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import RunningServer, running_server
from tests.prometheus import MetricValues

pytestmark = [
    pytest.mark.processes,  # the slow part of the suite: `make test-quick` leaves it out
    pytest.mark.skipif(
        not Path("/proc/net/tcp").exists(), reason="reads which worker serves a connection in /proc"
    ),
]

ROOT_REQUESTS = {"method": "GET", "route": "/", "status": "200"}
DEADLINE = 30.0


def group_processes(group: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == group:
            pids.append(int(entry.name))
    return pids


def socket_inode(server_port: int, client_port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if (local_port, remote_port) == (server_port, client_port):
            return fields[9]
    raise AssertionError(f"no server socket for client port {client_port}")


def serving_worker(server: RunningServer, connection: http.client.HTTPConnection) -> int:
    """The pid of the worker holding the server side of `connection`."""
    assert connection.sock is not None
    target = f"socket:[{socket_inode(server.port, connection.sock.getsockname()[1])}]"
    for pid in group_processes(server.process.pid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def connect(server: RunningServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read().decode()


@contextmanager
def connections_on_two_workers(
    server: RunningServer,
) -> Iterator[dict[int, http.client.HTTPConnection]]:
    """Open kept-alive connections, a burst at a time, until two workers serve one each. The
    server answers as soon as one worker is up: on a loaded machine the other may still be
    starting, so bursts go on (the extra connections closed) until `DEADLINE`."""
    by_worker: dict[int, http.client.HTTPConnection] = {}
    extra: list[http.client.HTTPConnection] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while len(by_worker) < 2:
            if time.monotonic() > deadline:
                pytest.fail(f"after {DEADLINE:g} s every connection still went to one worker")
            burst = [connect(server) for _ in range(8)]
            for connection in burst:
                connection.connect()
            for connection in burst:
                assert get(connection, "/healthz")[0] == 200  # the worker has accepted it
                worker = serving_worker(server, connection)
                if worker in by_worker:
                    extra.append(connection)
                else:
                    by_worker[worker] = connection
            for connection in extra:
                connection.close()
            extra.clear()
            if len(by_worker) < 2:
                time.sleep(0.2)
                keep_alive(by_worker.values())
        yield by_worker
    finally:
        for connection in [*by_worker.values(), *extra]:
            connection.close()


def keep_alive(connections: Iterable[http.client.HTTPConnection]) -> None:
    """A request on each idle connection: the server closes one idle for 5 s (Uvicorn's
    keep-alive timeout), and on a loaded machine the waits here can take longer than that."""
    for connection in connections:
        assert get(connection, "/healthz")[0] == 200


def scrape(connection: http.client.HTTPConnection) -> MetricValues:
    status, text = get(connection, "/metrics")
    assert status == 200
    return MetricValues(text)


def test_one_scrape_sees_every_worker(sqlite_url: str) -> None:
    with running_server(sqlite_url, "--workers", "2", kind=RunningServer) as server:
        with connections_on_two_workers(server) as by_worker:
            (first, on_first), (second, on_second) = list(by_worker.items())[:2]
            directory = Path(
                dict(
                    line.split("=", 1)
                    for line in Path(f"/proc/{first}/environ").read_text().split("\0")
                    if "=" in line
                )["PROMETHEUS_MULTIPROC_DIR"]
            )
            assert directory.is_dir()
            for _ in range(3):
                assert get(on_first, "/")[0] == 200
            for _ in range(5):
                assert get(on_second, "/")[0] == 200

            # Whichever worker answers the scrape, it counts both workers' requests.
            for connection in (on_first, on_second):
                values = scrape(connection)
                assert values.get("megapolis_http_requests_total", **ROOT_REQUESTS) == 8
                # Live gauges add up the live workers: the scrape itself is in flight, and the
                # other worker's count is the one it wrote last (at most a second ago, maybe
                # during the previous scrape).
                assert 1 <= values.get("megapolis_http_requests_in_flight") <= 2

            # A worker killed outright: its live gauges leave the sums, its counts stay.
            assert (directory / f"gauge_livesum_{first}.db").exists()
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + DEADLINE
            kept_alive = time.monotonic()
            while Path(f"/proc/{first}").exists() and first in group_processes(server.process.pid):
                assert time.monotonic() < deadline, "the killed worker is still there"
                time.sleep(0.05)
                if time.monotonic() - kept_alive > 1:
                    keep_alive([on_second])
                    kept_alive = time.monotonic()
            values = scrape(on_second)
            assert values.get("megapolis_http_requests_total", **ROOT_REQUESTS) == 8
            # Only the scrape, in the worker that answers it (its replacement has served none).
            assert values.get("megapolis_http_requests_in_flight") == 1
            assert not (directory / f"gauge_livesum_{first}.db").exists()

        # A clean stop removes the run's directory.
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=DEADLINE) == 0
        assert not directory.exists()


def test_one_worker_keeps_its_metrics_in_memory(sqlite_url: str) -> None:
    with running_server(sqlite_url, kind=RunningServer) as server:
        connection = connect(server)
        try:
            assert get(connection, "/")[0] == 200
            assert scrape(connection).get("megapolis_http_requests_total", **ROOT_REQUESTS) == 1
            environ = Path(f"/proc/{serving_worker(server, connection)}/environ").read_text()
            assert "PROMETHEUS_MULTIPROC_DIR=" not in environ
        finally:
            connection.close()
