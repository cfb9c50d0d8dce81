#!/bin/sh
# Docker secrets arrive as files; Dagster's instance file reads DAGSTER_PG_PASSWORD from the environment.
# The password is exported to the one process started below and never printed.
set -eu
if [ -n "${DAGSTER_PG_PASSWORD_FILE:-}" ]; then
    DAGSTER_PG_PASSWORD="$(cat "$DAGSTER_PG_PASSWORD_FILE")"
    export DAGSTER_PG_PASSWORD
fi
exec "$@"
