# syntax=docker/dockerfile:1
# Megapolis API image: `docker compose up -d --build` (see docker-compose.yml and docs/deployment.md).
#   docker build -t megapolis-api .
#   docker build --build-arg PIP_INDEX_URL=https://mirror.example/simple -t megapolis-api .

ARG PYTHON_IMAGE=python:3.12-slim

# ---- builder: Poetry, and the locked main dependencies in /app/.venv ----
FROM ${PYTHON_IMAGE} AS builder

# Keep in step with POETRY_VERSION / POETRY_MIRROR_PLUGIN_VERSION in the Makefile.
ARG POETRY_VERSION=2.5.1
ARG POETRY_MIRROR_PLUGIN_VERSION=0.6.5
# A package index to use instead of PyPI (company mirror, pull-through cache). pip reads it
# directly; poetry-plugin-pypi-mirror hands it to Poetry (an empty value leaves PyPI in place).
ARG PIP_INDEX_URL=

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    POETRY_NO_INTERACTION=1 \
    POETRY_VIRTUALENVS_IN_PROJECT=true \
    POETRY_PYPI_MIRROR_URL=${PIP_INDEX_URL}

RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/poetry \
    && /opt/poetry/bin/pip install \
        "poetry==${POETRY_VERSION}" \
        "poetry-plugin-pypi-mirror==${POETRY_MIRROR_PLUGIN_VERSION}"

WORKDIR /app
# The dependency layer is rebuilt only when the lock changes, not on every code change.
COPY pyproject.toml poetry.lock ./
RUN --mount=type=cache,target=/root/.cache/pypoetry \
    /opt/poetry/bin/poetry sync --only main --no-root --compile

# ---- runtime: the venv, the code, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production
ENV PATH=/app/.venv/bin:$PATH

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY alembic.ini manage.py ./
COPY alembic/ alembic/
COPY app/ app/
COPY --chmod=755 docker/entrypoint.sh docker/entrypoint.sh

# The user the API runs as, never root. By default a high id no host user has; docker-compose.yml
# builds it with yours (APP_UID/APP_GID, default 1000), so the revisions `manage.py migrate -m`
# writes into the bind-mounted alembic/versions belong to you. Declared here, after the COPYs, so a
# different id rebuilds only this layer. --non-unique: a gid the base image already has (e.g. 20,
# macOS's staff) is fine.
ARG APP_UID=10001
ARG APP_GID=10001
# The code stays root-owned (read-only for the app). Writable: /app (development key, SQLite
# file) and alembic/versions (a revision written in a container without the bind mount), and /tmp
# for everyone, with the sticky bit (temporary files, Prometheus' multiprocess directory; Compose
# mounts a fresh tmpfs there).
RUN if [ "${APP_UID}" = 0 ] || [ "${APP_GID}" = 0 ]; then \
        echo "APP_UID/APP_GID must not be 0: the API does not run as root" >&2; exit 1; \
    fi \
    && groupadd --system --non-unique --gid "${APP_GID}" app \
    && useradd --system --non-unique --uid "${APP_UID}" --gid app --home-dir /app \
        --no-create-home --shell /usr/sbin/nologin app \
    && chown app:app /app /app/alembic/versions \
    && chmod 1777 /tmp

USER app
EXPOSE 8000

# slim has no curl: ask /healthz with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
