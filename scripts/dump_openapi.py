"""Write the API's OpenAPI schema, as `GET /openapi.json` serves it, without starting a server:

    python scripts/dump_openapi.py clients/typescript/openapi.json    (`-` or nothing: stdout)

`make client` generates the TypeScript client (clients/typescript/) from it. The schema comes
from `create_app()` with fixed settings, not from `.env` or the environment, so every machine
dumps the same document (`/metrics` is in it, as with the default METRICS_ENABLED).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import Settings
from app.main import create_app

SETTINGS = {
    "APP_ENV": "test",
    "DATABASE_URL": "sqlite+aiosqlite:///:memory:",  # never opened: no lifespan runs
    "JWT_SECRET_KEY": "not-a-secret-only-for-the-schema-dump-000",
    "METRICS_ENABLED": True,
}


def openapi_document() -> dict[str, Any]:
    return create_app(Settings(_env_file=None, **SETTINGS)).openapi()  # type: ignore[arg-type]


def dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = dump(openapi_document())
    if len(argv) < 2 or argv[1] == "-":
        sys.stdout.write(text)
    else:
        Path(argv[1]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
