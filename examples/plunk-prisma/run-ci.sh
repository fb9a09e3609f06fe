#!/usr/bin/env bash
# The Prisma example's CI: install the pinned npm packages, generate Prisma's client, start a
# throwaway PostgreSQL cluster (or use DATABASE_URL's server: a fresh database is created there),
# install Plunk's tables and the toolkit with `plunk-sql migrate`, and run the Node tests.
#   examples/plunk-prisma/run-ci.sh            (from the repository, after `make venv`)
# PYTHON (default .venv/bin/python of the repository) must have plunk_sql installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
cd "$here"

# Prisma 7 needs Node ^20.19 || ^22.12 || >=24 (Debian 12's own nodejs package is 18).
node -e 'const [a, b] = process.versions.node.split(".").map(Number);
  if (!(a === 20 && b >= 19 || a === 22 && b >= 12 || a >= 24)) {
    console.error(`node ${process.versions.node}: Prisma 7 needs ^20.19, ^22.12 or >=24`); process.exit(2); }'
npm ci --no-audit --no-fund
# `prisma generate` needs no schema engine (only Prisma's migrate/db commands run it, and this
# example never does: the toolkit and Plunk own the schema), but the CLI fetches one unless told
# where it is; pointing it at /bin/true keeps the run offline.
PRISMA_SCHEMA_ENGINE_BINARY=/bin/true npx prisma generate

exec "$python" - "$here" <<'PY'
import os, subprocess, sys, uuid

import psycopg
from psycopg.conninfo import make_conninfo

from plunk_sql.migrate import migrate

from plunk_sql.testing.cluster import start_cluster

here = sys.argv[1]
cluster = None
admin = os.environ.get("DATABASE_URL")
if not admin:
    cluster = start_cluster()
    admin = cluster.url()
name = f"plunk_prisma_{uuid.uuid4().hex[:8]}"
with psycopg.connect(admin, autocommit=True) as conn:
    conn.execute(f'CREATE DATABASE "{name}"')
url = make_conninfo(admin, dbname=name)
try:
    migrate(url, with_plunk_tables=True, schedule_sweep=False)
    # node-postgres wants a URL, not a key=value conninfo.
    params = psycopg.conninfo.conninfo_to_dict(url)
    node_url = "postgresql://{user}@{host}:{port}/{dbname}".format(
        user=params.get("user", "postgres"), host=params.get("host", "127.0.0.1"),
        port=params.get("port", 5432), dbname=name)
    if params.get("password"):
        node_url = node_url.replace("@", f":{params['password']}@", 1)
    rc = subprocess.run(["npm", "test"], cwd=here, env={**os.environ, "DATABASE_URL": node_url}).returncode
finally:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if cluster is not None:
        cluster.destroy()
sys.exit(rc)
PY
