"""`make bench`'s CPU accounting: PostgreSQL backends that start during a run (the API's pool
opens its overflow connections once wrk starts) are PostgreSQL's CPU, not "foreign" load that
marks the run as noisy; a backend gone by the end is not subtracted."""

from __future__ import annotations

import os

import pytest

from bench.run import cpu_seconds_by_pid, cpu_used_between


def test_a_backend_started_during_the_run_counts_whole_and_one_gone_is_not_subtracted() -> None:
    before = {101: 5.0, 102: 3.0}  # 102 is closed during the run
    after = {101: 6.5, 103: 0.4}  # 103 is opened during the run
    assert cpu_used_between(before, after) == pytest.approx(1.5 + 0.4)


def test_cpu_seconds_are_read_for_live_processes_only() -> None:
    readings = cpu_seconds_by_pid([os.getpid(), 2**22 + 1])  # the second: above any pid_max
    assert list(readings) == [os.getpid()]
    assert readings[os.getpid()] > 0
