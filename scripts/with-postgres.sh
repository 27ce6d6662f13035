#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server for the tests: initdb in a temporary directory,
# listening only on a Unix socket there (no port collisions), and CLOUD_TEST_POSTGRES_URL pointing at it.
# Without PostgreSQL installed the command runs without it (the PostgreSQL tests then skip).
set -euo pipefail
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "with-postgres: PostgreSQL is not installed; running without it" >&2
    exec "$@"
fi
base="$(mktemp -d /tmp/cloud-pg-XXXXXX)"
run_as=()
if [ "$(id -u)" = 0 ]; then
    chmod 0777 "$base"
    run_as=(runuser -u postgres --)
fi
"${run_as[@]}" "$bindir/initdb" -D "$base/data" -A trust -U postgres --no-sync >/dev/null
"${run_as[@]}" "$bindir/pg_ctl" -D "$base/data" -l "$base/log" -w \
    -o "-c listen_addresses= -k $base -c max_connections=200 -c fsync=off" start >/dev/null
stop() {
    "${run_as[@]}" "$bindir/pg_ctl" -D "$base/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$base"
}
trap stop EXIT
export CLOUD_TEST_POSTGRES_URL="postgres://postgres@localhost/postgres?host=$base"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on $base" >&2
"$@"
