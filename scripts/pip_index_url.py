"""Print the package index URL that pip itself would use.

Order: PIP_INDEX_URL, pip's configuration files (`pip config`), then pip's built-in default.
The Makefile hands this to poetry-plugin-pypi-mirror so Poetry reads the same simple index.
"""

from __future__ import annotations

import os
import subprocess
import sys


def pip_index_url() -> str:
    from_env = os.environ.get("PIP_INDEX_URL", "").strip()
    if from_env:
        return from_env.split()[0]
    for key in ("global.index-url", "install.index-url"):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", key],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip().split()[0]
    from pip._internal.models.index import PyPI  # pip's default index

    return str(PyPI.simple_url)


if __name__ == "__main__":
    print(pip_index_url())
