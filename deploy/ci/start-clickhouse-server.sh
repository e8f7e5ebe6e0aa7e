#!/usr/bin/env bash
# Install (if missing) and start Debian's clickhouse-server without systemd, then wait
# until it answers `SELECT 1` on 127.0.0.1:9000.
#
# Why this script: CI containers have no init system, and Debian's package (18.16, old)
# is the only ClickHouse *server* available there; the clickhouse-driver sink path must be
# tested against a real server, not only against embedded chDB.
#
# Idempotent: a server that already answers is left running (only the test user with a
# password, below, is added when missing).
# Afterwards run the tests with
#   CXPULSE_TEST_CLICKHOUSE_URL=clickhouse://default:@127.0.0.1:9000/cxpulse_test
#
# Environment knobs: CLICKHOUSE_WAIT_SECONDS (default 60), CLICKHOUSE_CONFIG
# (default /etc/clickhouse-server/config.xml).
set -euo pipefail

WAIT_SECONDS="${CLICKHOUSE_WAIT_SECONDS:-60}"
CONFIG="${CLICKHOUSE_CONFIG:-/etc/clickhouse-server/config.xml}"
PIDFILE=/var/run/clickhouse-server/clickhouse-server.pid
LOG=/var/log/clickhouse-server/clickhouse-server.log
ERRLOG=/var/log/clickhouse-server/clickhouse-server.err.log
# Written by the server itself once daemonized (it must own the file: do not pre-create).
STDOUT_LOG=/var/log/clickhouse-server/stdout.log
STDERR_LOG=/var/log/clickhouse-server/stderr.log

say() { echo "start-clickhouse-server: $*" >&2; }

answers() {
    clickhouse-client --host 127.0.0.1 --port 9000 --query "SELECT 1" >/dev/null 2>&1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# A user with a password, for the tests that check a password is never printed
# (tests/integration/test_secrets.py; the default user has none). Loopback only. The
# server reloads users.d by itself, so this also serves a server already running.
SECRET_USER=cxpulse_secret
SECRET_PASSWORD=cxpulse-secret-7d41
USERS_D="$(dirname "$CONFIG")/users.d"
add_secret_user() {
    local file="$USERS_D/cxpulse-secret-user.xml"
    if [ ! -f "$file" ]; then
        as_root mkdir -p "$USERS_D"
        as_root tee "$file" >/dev/null <<XML
<?xml version="1.0"?>
<yandex>
    <users>
        <$SECRET_USER>
            <password>$SECRET_PASSWORD</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </$SECRET_USER>
    </users>
</yandex>
XML
    fi
    local deadline=$((SECONDS + WAIT_SECONDS))
    until clickhouse-client --host 127.0.0.1 --port 9000 --user "$SECRET_USER" \
        --password "$SECRET_PASSWORD" --query "SELECT 1" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "the server did not load $file within ${WAIT_SECONDS}s"
            exit 1
        fi
        sleep 0.5
    done
}

if command -v clickhouse-client >/dev/null 2>&1 && answers; then
    say "already running: $(clickhouse-client --host 127.0.0.1 --query 'SELECT version()')"
    add_secret_user
    exit 0
fi

if [ ! -x /usr/sbin/clickhouse-server ] || ! command -v clickhouse-client >/dev/null 2>&1; then
    say "installing clickhouse-server and clickhouse-client (apt)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        clickhouse-server clickhouse-client >/dev/null
fi

# The package's postinst creates the user; a minimal image might not have run it.
if ! id clickhouse >/dev/null 2>&1; then
    as_root useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin clickhouse
fi

for d in /var/lib/clickhouse /var/log/clickhouse-server /var/run/clickhouse-server; do
    as_root mkdir -p "$d"
    as_root chown clickhouse:clickhouse "$d"
done

# A stale pid file (container restarted, server killed) would make --daemon refuse.
if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        say "server process $pid exists but does not answer yet; waiting for it"
    else
        as_root rm -f "$PIDFILE"
    fi
fi

if [ ! -f "$PIDFILE" ]; then
    say "starting /usr/sbin/clickhouse-server as user clickhouse ($CONFIG)"
    # --daemon forks and detaches; the server drops nothing by itself, so start it as the
    # clickhouse user (the owner of its data directory) rather than as root.
    as_root start-stop-daemon --start --quiet --chuid clickhouse:clickhouse \
        --chdir /var/lib/clickhouse --exec /usr/sbin/clickhouse-server -- \
        --config-file="$CONFIG" --pid-file="$PIDFILE" --daemon || true
fi

deadline=$((SECONDS + WAIT_SECONDS))
until answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "ClickHouse did not answer SELECT 1 on 127.0.0.1:9000 within ${WAIT_SECONDS}s." \
            "Check the logs below; a port already in use or a bad config are the usual causes."
        for f in "$STDERR_LOG" "$STDOUT_LOG" "$ERRLOG" "$LOG"; do
            [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 30 "$f" >&2; }
        done
        exit 1
    fi
    sleep 0.5
done

add_secret_user
say "ready: ClickHouse $(clickhouse-client --host 127.0.0.1 --query 'SELECT version()') on 127.0.0.1:9000"
say "export CXPULSE_TEST_CLICKHOUSE_URL=clickhouse://default:@127.0.0.1:9000/cxpulse_test"
