#!/bin/sh
# Container entrypoint.
# 1. Apply the migrations (set RUN_MIGRATIONS=0 to skip). Replicas starting together are safe:
#    on PostgreSQL alembic/env.py holds an advisory lock, so each revision is applied once.
# 2. Without arguments, serve the API; with arguments, run them instead, e.g.
#    `docker compose run --rm api python manage.py create-superuser you@example.com`.
# `exec` replaces this shell with the command, so SIGTERM from `docker stop` reaches uvicorn.
set -eu

cd "$(dirname "$0")/.."

if [ "${RUN_MIGRATIONS:-1}" != "0" ]; then
    python manage.py upgrade
fi

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

exec python manage.py run --host 0.0.0.0 --port 8000 --no-reload --workers "${WEB_CONCURRENCY:-1}"
