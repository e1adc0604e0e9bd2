#!/usr/bin/env bash
# From a fresh clone to a working copy of a server's data and media, in one go:
#
#     scripts/onboard.sh staging
#     scripts/onboard.sh --registry [SNAPSHOT]
#     DISKETTE_API_KEY=dsk_... scripts/onboard.sh --url URL
#
# HOST is an ~/.ssh/config alias (or user@host). The project carries a
# fabfile.py holding `from diskette.remote import ns`, and a fabric.yaml that
# says where the project lives on the server (diskette.remote.project_dir).
# Its requirements include "django-diskette[remote]" (Fabric comes with it).
#
# With --registry, no SSH at all: the latest snapshot (or SNAPSHOT, an id) of
# the team's registry (STORAGES["diskette"], docs/registry.md) is loaded with
# `inv pull-snapshot`. The project carries a tasks.py holding
# `from diskette.tasks import ns`, and requires "django-diskette[tasks,s3]".
#
# With --url, no SSH either: the snapshot at URL, a site's HTTP endpoints
# (https://example.com/diskette/snapshots/latest/, docs/http.md), is loaded
# with `inv pull-snapshot --url`, sending the API key of DISKETTE_API_KEY.
# The project carries the same tasks.py and requires "django-diskette[tasks]".
#
# Environment: PYTHON (interpreter for the virtualenv, default python3),
# MANAGE (path of manage.py, default manage.py).
set -euo pipefail
usage="usage: scripts/onboard.sh HOST, --registry [SNAPSHOT] or --url URL"
host="${1:?$usage}"
if [ "$host" = "--url" ] && [ -z "${2:-}" ]; then
    echo "$usage" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
manage="${MANAGE:-manage.py}"

if [ ! -x .venv/bin/python ]; then
    echo "=== Creating .venv and installing the project ==="
    "${PYTHON:-python3}" -m venv .venv
    if [ -f requirements.txt ]; then
        .venv/bin/python -m pip install --quiet -r requirements.txt
    else
        .venv/bin/python -m pip install --quiet -e .
    fi
fi

echo "=== Creating an empty local database ==="
# diskette_reset creates the database (a PostgreSQL one too) and migrates.
.venv/bin/python "$manage" diskette_reset --noinput

# --no-backup: a brand-new database holds nothing worth a safety snapshot.
if [ "$host" = "--registry" ]; then
    snapshot="${2:-latest}"
    echo "=== Pulling snapshot ${snapshot} of the registry ==="
    .venv/bin/inv pull-snapshot --snapshot "$snapshot" --yes --no-backup
    echo "=== Done: this checkout now has the data and media of snapshot ${snapshot} ==="
    exit 0
fi
if [ "$host" = "--url" ]; then
    echo "=== Pulling the snapshot at $2 ==="
    .venv/bin/inv pull-snapshot --url "$2" --yes --no-backup
    echo "=== Done: this checkout now has the data and media of $2 ==="
    exit 0
fi

echo "=== Pulling a snapshot of ${host} ==="
.venv/bin/fab -H "$host" pull-snapshot --yes --no-backup

echo "=== Done: this checkout now has the data and media of ${host} ==="
