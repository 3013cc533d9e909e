"""Metrics shared by the workers of one `manage.py run --workers N`.

prometheus_client's multiprocess mode: each worker writes its values to files in the directory
`PROMETHEUS_MULTIPROC_DIR` names, and a scrape (answered by any one worker) adds up every
worker's. The variable must be set before the workers import prometheus_client, so `manage.py
run` sets it, to a fresh directory for each run (files of an earlier run would count again), and
removes the directory when the server stops.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import multiprocess

DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The files of gauges that count only live processes (`livesum`): gauge_livesum_<pid>.db.
LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def multiprocess_directory() -> Path | None:
    value = os.environ.get(DIRECTORY_VARIABLE)
    return Path(value) if value else None


@contextmanager
def shared_metrics_directory(workers: int, enabled: bool) -> Iterator[Path | None]:
    """For the run of `workers` processes: a fresh directory in `PROMETHEUS_MULTIPROC_DIR`
    (inherited by the workers), removed afterwards. One process needs none."""
    if workers < 2 or not enabled:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="megapolis-metrics-"))
    previous = os.environ.get(DIRECTORY_VARIABLE)
    os.environ[DIRECTORY_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(DIRECTORY_VARIABLE, None)
        else:
            os.environ[DIRECTORY_VARIABLE] = previous
        shutil.rmtree(directory, ignore_errors=True)


def mark_dead_workers(directory: Path) -> None:
    """Forget the live gauges (requests in flight, the pool) of workers that are gone: a worker
    killed or crashed (and replaced by Uvicorn) never removed its own. Counters and histograms of
    dead workers stay: their requests were served."""
    for path in directory.glob("gauge_live*.db"):
        match = LIVE_GAUGE_FILE.fullmatch(path.name)
        if match is not None and not process_exists(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), str(directory))  # type: ignore[no-untyped-call]


def mark_this_worker_dead() -> None:
    """At a worker's shutdown: its live gauges leave the sums at once."""
    directory = multiprocess_directory()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), str(directory))  # type: ignore[no-untyped-call]


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return not is_zombie(pid)


def is_zombie(pid: int) -> bool:
    """A worker that was killed but not yet reaped by Uvicorn's supervisor still answers
    `kill(pid, 0)`; its gauges must leave the sums all the same (Linux: /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (command) state ...": the command may hold spaces and parentheses.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
