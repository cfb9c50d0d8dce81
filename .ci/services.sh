#!/usr/bin/env bash
# Real backing services for the scale-out tests (issue 9): a PostgreSQL server (Debian's package) and a moto S3
# server, both on 127.0.0.1, free ports, throwaway state under one directory, random credentials.
#
#   bash .ci/services.sh start [DIR]   start both (idempotent for DIR; DIR defaults to a new temp dir), write
#                                      DIR/services.env (mode 600) and print its path
#   bash .ci/services.sh stop DIR      stop both and delete DIR
#   bash .ci/services.sh status DIR    exit 0 when both answer
#   source .ci/services.sh && v6_services_start
#                                      the same from a CI shell: exports V6_SERVICES_ENV and stops everything on EXIT
#
# The env file holds DAGSTER_PG_*, V6_PG_URL, AWS_* and V6_LAKE_URI for these servers. It is read by the tests
# (v6_assets_tests/scaleout) and can be loaded by hand with `set -a; . FILE; set +a`; the CI shell itself only gets
# V6_SERVICES_ENV, so the rest of the suite keeps its local defaults.
# Environment: V6_PYTHON (python with moto[server]; default .venv/bin/python), V6_SERVICES_PG_BINDIR (a PostgreSQL
# bin directory; default: newest /usr/lib/postgresql/*/bin, installed with apt-get when missing).

_V6_SERVICES_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_V6_SERVICES_MARKER=".v6-services"
_V6_S3_BUCKET="v6-lake"

_v6_log() { echo "[services] $*" >&2; }

_v6_python() {
    local py="${V6_PYTHON:-$_V6_SERVICES_ROOT/.venv/bin/python}"
    if [[ ! -x "$py" ]]; then
        _v6_log "no python at $py (build the venv first: make install, or set V6_PYTHON)"
        return 1
    fi
    echo "$py"
}

_v6_free_port() {
    # Bind port 0 on loopback and report what the kernel chose; the caller retries if someone takes it meanwhile.
    "$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_v6_random_secret() {
    "$1" -c 'import secrets; print(secrets.token_urlsafe(24))'
}

_v6_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_v6_pg_bindir() {
    if [[ -n "${V6_SERVICES_PG_BINDIR:-}" ]]; then
        echo "$V6_SERVICES_PG_BINDIR"
        return 0
    fi
    local dir
    # Debian's layout; the newest major version wins. /usr/local/bin/postgres may be another build: not used.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/postgres" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/psql" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

_v6_pg_install() {
    if _v6_pg_bindir >/dev/null; then
        return 0
    fi
    if [[ "$(id -u)" != "0" ]]; then
        _v6_log "PostgreSQL is not installed and this user cannot apt-get install it (install the 'postgresql' package)"
        return 1
    fi
    _v6_log "installing PostgreSQL (Debian package 'postgresql')"
    # Only the binaries are wanted: no system cluster on 5432 left behind by the package's postinst.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/v6-services.conf
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    _v6_pg_bindir >/dev/null
}

# Run a command as the unprivileged 'postgres' user when we are root (the server refuses to run as root).
_v6_as_pg() {
    if [[ "$(id -u)" == "0" ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_v6_pg_running() {
    local dir="$1" bindir
    [[ -f "$dir/pg.env" ]] || return 1
    bindir="$(_v6_pg_bindir)" || return 1
    # shellcheck disable=SC1091
    (. "$dir/pg.env" && "$bindir/pg_isready" -q -h 127.0.0.1 -p "$DAGSTER_PG_PORT" -t 3)
}

_v6_pg_start() {
    local dir="$1" py="$2" bindir port password admin_password attempt
    if _v6_pg_running "$dir"; then
        return 0
    fi
    _v6_pg_install || return 1
    bindir="$(_v6_pg_bindir)"
    rm -rf "$dir/pg" "$dir/pg.env"
    mkdir -p "$dir/pg/socket"
    chmod 700 "$dir/pg" "$dir/pg/socket"
    admin_password="$(_v6_random_secret "$py")"
    password="$(_v6_random_secret "$py")"
    (umask 077 && printf '%s\n' "$admin_password" >"$dir/pg/admin.pw")
    if [[ "$(id -u)" == "0" ]]; then
        chown -R postgres: "$dir/pg"
    fi
    # -N: no fsync during initdb; the cluster is thrown away after the run.
    if ! _v6_as_pg "$bindir/initdb" -D "$dir/pg/data" -U v6_admin -E UTF8 --no-locale -N \
        --auth-local=trust --auth-host=scram-sha-256 --pwfile="$dir/pg/admin.pw" >"$dir/pg/initdb.log" 2>&1; then
        _v6_log "initdb failed; see $dir/pg/initdb.log"
        return 1
    fi
    rm -f "$dir/pg/admin.pw"
    for attempt in 1 2 3; do
        port="$(_v6_free_port "$py")"
        # Loopback only; the unix socket lives in our private directory, not /var/run/postgresql.
        if _v6_as_pg "$bindir/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/pg/socket -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_connections=100" start </dev/null >>"$dir/pg/pg_ctl.log" 2>&1; then
            break
        fi
        _v6_log "PostgreSQL did not start on port $port (attempt $attempt); see $dir/pg/server.log"
        port=""
    done
    [[ -n "$port" ]] || return 1
    # The test user may create databases: each test module gets a fresh one.
    if ! "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/pg/socket" -p "$port" -U v6_admin -d postgres \
        -v pw="$password" >>"$dir/pg/psql.log" 2>&1 <<'SQL'; then
CREATE ROLE v6_dagster LOGIN CREATEDB PASSWORD :'pw';
CREATE DATABASE v6_dagster OWNER v6_dagster;
SQL
        _v6_log "creating the database user failed; see $dir/pg/psql.log"
        return 1
    fi
    (
        umask 077
        cat >"$dir/pg.env" <<EOF
DAGSTER_PG_HOST=127.0.0.1
DAGSTER_PG_PORT=$port
DAGSTER_PG_USER=v6_dagster
DAGSTER_PG_PASSWORD=$password
DAGSTER_PG_DB=v6_dagster
V6_PG_URL=postgresql://v6_dagster:$password@127.0.0.1:$port/v6_dagster
EOF
    )
    _v6_log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

_v6_pg_stop() {
    local dir="$1" bindir
    [[ -d "$dir/pg/data" ]] || return 0
    bindir="$(_v6_pg_bindir)" || return 0
    if [[ -f "$dir/pg/data/postmaster.pid" ]]; then
        _v6_as_pg "$bindir/pg_ctl" -D "$dir/pg/data" -m fast -w -t 30 stop </dev/null >>"$dir/pg/pg_ctl.log" 2>&1 ||
            _v6_log "pg_ctl stop failed; see $dir/pg/pg_ctl.log"
    fi
}

_v6_s3_pid_is_ours() {
    local pid="$1" port="$2"
    [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "moto.server -H 127.0.0.1 -p $port"
}

_v6_s3_running() {
    local dir="$1"
    [[ -f "$dir/s3.env" && -f "$dir/s3.pid" ]] || return 1
    # shellcheck disable=SC1091
    (. "$dir/s3.env" && _v6_port_open "${AWS_ENDPOINT_URL##*:}" && _v6_s3_pid_is_ours "$(cat "$dir/s3.pid")" \
        "${AWS_ENDPOINT_URL##*:}")
}

_v6_s3_start() {
    local dir="$1" py="$2" port pid key secret attempt i
    if _v6_s3_running "$dir"; then
        return 0
    fi
    _v6_s3_stop "$dir"
    rm -f "$dir/s3.env"
    for attempt in 1 2 3; do
        port="$(_v6_free_port "$py")"
        # Closed stdio: the server outlives `services.sh start` without holding the caller's pipes open.
        "$py" -m moto.server -H 127.0.0.1 -p "$port" </dev/null >"$dir/s3.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/s3.pid"
        for i in $(seq 1 150); do
            if _v6_port_open "$port"; then
                break
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if _v6_port_open "$port" && kill -0 "$pid" 2>/dev/null; then
            break
        fi
        _v6_log "moto server did not come up on port $port (attempt $attempt); see $dir/s3.log"
        kill "$pid" 2>/dev/null || true
        port=""
    done
    [[ -n "$port" ]] || return 1
    key="v6test$(_v6_random_secret "$py" | tr -dc 'A-Za-z0-9' | head -c 14)"
    secret="$(_v6_random_secret "$py")"
    (
        umask 077
        cat >"$dir/s3.env" <<EOF
AWS_ENDPOINT_URL=http://127.0.0.1:$port
AWS_ALLOW_HTTP=true
AWS_ACCESS_KEY_ID=$key
AWS_SECRET_ACCESS_KEY=$secret
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
V6_S3_BUCKET=$_V6_S3_BUCKET
V6_LAKE_URI=s3://$_V6_S3_BUCKET/lake
EOF
    )
    # The bucket, created with the same client stack the tests use.
    if ! (set -a && . "$dir/s3.env" && "$py" -c '
import os, boto3
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=os.environ["V6_S3_BUCKET"])
') >>"$dir/s3.log" 2>&1; then
        _v6_log "creating bucket $_V6_S3_BUCKET failed; see $dir/s3.log"
        return 1
    fi
    _v6_log "moto S3 on 127.0.0.1:$port (bucket $_V6_S3_BUCKET)"
}

_v6_s3_stop() {
    local dir="$1" pid port i
    [[ -f "$dir/s3.pid" ]] || return 0
    pid="$(cat "$dir/s3.pid")"
    port="$(sed -n 's/^AWS_ENDPOINT_URL=.*://p' "$dir/s3.env" 2>/dev/null)"
    # Only the process this script started (pid file + its exact command line), never anything by name.
    if [[ -n "$pid" ]] && _v6_s3_pid_is_ours "$pid" "${port:-}"; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/s3.pid"
}

v6_services_start() {
    local dir="${1:-${V6_SERVICES_DIR:-}}" py
    py="$(_v6_python)" || return 1
    if [[ -z "$dir" ]]; then
        dir="$(mktemp -d "${TMPDIR:-/tmp}/v6-services.XXXXXX")"
    fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    touch "$dir/$_V6_SERVICES_MARKER"
    chmod 711 "$dir"  # the postgres user must reach its data directory inside
    _v6_pg_start "$dir" "$py" || return 1
    _v6_s3_start "$dir" "$py" || return 1
    (
        umask 077
        {
            echo "# written by .ci/services.sh; throwaway credentials of loopback test servers"
            echo "V6_SERVICES_DIR=$dir"
            cat "$dir/pg.env" "$dir/s3.env"
        } >"$dir/services.env"
    )
    export V6_SERVICES_DIR="$dir"
    export V6_SERVICES_ENV="$dir/services.env"
    # When sourced (CI shell), tear down on exit; a signal exits so the EXIT trap runs.
    if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
        trap 'v6_services_stop' EXIT
        trap 'exit 130' INT TERM HUP
    fi
}

v6_services_stop() {
    local dir="${1:-${V6_SERVICES_DIR:-}}"
    if [[ -z "$dir" || ! -d "$dir" ]]; then
        return 0
    fi
    if [[ ! -f "$dir/$_V6_SERVICES_MARKER" ]]; then
        _v6_log "$dir was not made by this script; not touching it"
        return 1
    fi
    _v6_s3_stop "$dir"
    _v6_pg_stop "$dir"
    rm -rf "$dir"
    _v6_log "stopped; removed $dir"
}

v6_services_status() {
    local dir="${1:-${V6_SERVICES_DIR:-}}"
    [[ -n "$dir" ]] && _v6_pg_running "$dir" && _v6_s3_running "$dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
    start)
        v6_services_start "${2:-}"
        echo "$V6_SERVICES_ENV"
        ;;
    stop)
        v6_services_stop "${2:?usage: services.sh stop DIR}"
        ;;
    status)
        if v6_services_status "${2:?usage: services.sh status DIR}"; then
            echo "running"
        else
            echo "not running"
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 start [DIR] | stop DIR | status DIR   (or: source $0 && v6_services_start)" >&2
        exit 2
        ;;
    esac
fi
