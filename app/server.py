"""The app as `manage.py run` serves it (`app.server:app`): the app of `app.main`, in a process
tuned to serve for days.

Garbage collector, measured with `make bench`: full collections over everything the app
allocated at start made the p99 tail (10× the median), and a young-generation pass every 700
allocations cost ~15 % of an authenticated read. So, once the app is built: freeze what exists
(it lives as long as the process) and collect young objects less often. Memory stays bounded:
cycles are still collected, only in larger batches. Tests and other hosts of `create_app()` keep
Python's defaults.

The HTTP protocol `manage.py run` serves it with: app/http_protocol.py.
"""

from __future__ import annotations

import gc

from app.main import app

__all__ = ["app"]


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


tune_garbage_collector()
