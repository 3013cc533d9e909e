#!/usr/bin/env bash
# `make compose-check`: the image and the Compose stack, built and run for real by the shared
# compose-check tool (compose_check.sh: it installs Debian's Docker engine, builds stand-ins for the
# base images Docker Hub would give, then builds, starts and checks the stack, README commands
# included). It needs root. Its last line is `compose: N passed, M failed`; exit 0 only if M is 0.
#
#   docker/compose-check.sh             run the check (what `make compose-check` does)
#   docker/compose-check.sh --why-not   exit 0 if an engine can run here, else say why (for CI)
#
# The tool is COMPOSE_CHECK if set, else shared/tools/compose-check/compose_check.sh in a folder
# above the project (or above the local repository it was cloned from). Its own knobs (STATE_DIR,
# KEEP_STACK=1, ...) pass through the environment.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
tool_path=shared/tools/compose-check/compose_check.sh

# Folders above $1, nearest first.
ancestors() {
    local dir=$1
    while [ "$dir" != / ]; do
        dir=$(dirname "$dir")
        echo "$dir"
    done
}

find_checker() {
    if [ -n "${COMPOSE_CHECK:-}" ]; then
        if [ -f "$COMPOSE_CHECK" ]; then echo "$COMPOSE_CHECK"; fi
        return 0
    fi
    local origin dir
    origin=$(git -C "$project" config --get remote.origin.url 2>/dev/null || true)
    while read -r dir; do
        if [ -f "$dir/$tool_path" ]; then
            echo "$dir/$tool_path"
            return 0
        fi
    done < <(ancestors "$project"; if [ -d "$origin" ]; then ancestors "$(cd "$origin" && pwd)"; fi)
}

# Why compose-check cannot run an engine here (nothing, exit 0, when it can).
why_not() {
    if [ "$(id -u)" != 0 ]; then
        echo "not root: compose-check installs and starts its Docker engine as root"
    elif docker info >/dev/null 2>&1; then
        return 0
    elif ! command -v apt-get >/dev/null; then
        echo "no apt-get: compose-check installs the engine from Debian packages"
    elif ! unshare --mount --uts --ipc --net --pid --fork true 2>/dev/null; then
        echo "no namespaces for a container here (a restricted container?)"
    else
        return 0
    fi
    return 1
}

if [ "${1:-}" = --why-not ]; then
    why_not
    exit
fi

checker=$(find_checker)
if [ -z "$checker" ]; then
    cat >&2 <<EOF
compose-check: the compose-check tool is missing.
  Looked for ${COMPOSE_CHECK:-$tool_path in the folders above $project}.
  It is the team's shared tool (compose_check.sh and its README.md, outside this repository):
  put it in shared/tools/compose-check/ beside your checkout, or point at it:
    make compose-check COMPOSE_CHECK=/path/to/compose_check.sh
EOF
    exit 2
fi
if reason=$(why_not); [ -n "$reason" ]; then
    echo "compose-check: cannot run here: $reason" >&2
    exit 2
fi

# The api container writes revisions into the bind-mounted alembic/versions as APP_UID:APP_GID
# (docker-compose.yml). A developer builds it with the ids that own the checkout; so does this
# check. A checkout owned by root (the API never runs as root) gets docs/deployment.md's one-time step,
# on a copy: the folder handed to the container's user.
read -r owner_uid owner_gid < <(stat -c '%u %g' "$project/alembic/versions")
target=$project
if [ "$owner_uid" != 0 ]; then
    export APP_UID=${APP_UID:-$owner_uid} APP_GID=${APP_GID:-$owner_gid}
else
    export APP_UID=${APP_UID:-1000} APP_GID=${APP_GID:-1000}
    stage=$(mktemp -d -t megapolis-compose-check.XXXXXX)
    trap 'rm -rf "$stage"' EXIT
    # What compose_check.sh copies from a git checkout: tracked, and untracked but not ignored.
    if git -C "$project" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$project" && git ls-files -z -co --exclude-standard \
            | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$stage" -xf -
    else
        cp -a "$project/." "$stage/"
    fi
    chown "$APP_UID:$APP_GID" "$stage/alembic/versions"
    echo "compose-check: $project belongs to root: checking a copy whose alembic/versions" \
        "belongs to $APP_UID:$APP_GID (the API's user), as after docs/deployment.md's chown"
    target=$stage
fi
echo "compose-check: $checker $target (APP_UID=$APP_UID APP_GID=$APP_GID)"
bash "$checker" "$target"
