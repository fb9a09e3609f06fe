"""A throwaway PgBouncer in front of a PostgreSQL server, for tests.

Uses the system's `pgbouncer` binary (Debian package `pgbouncer`). PgBouncer
refuses to run as root, so as root it runs as the `postgres` account via
runuser, with its configuration in a temporary directory that account can
read. It listens on a free loopback port and forwards every database name to
the server (`* = host=... port=...`), with trust authentication for the users
given (auth_file lists them; trust still needs the names).

    with start_pgbouncer("127.0.0.1", 5432, users=["postgres"]) as bouncer:
        url = bouncer.url("plunk")   # postgresql://postgres@127.0.0.1:PORT/plunk
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from plunk_sql.testing.cluster import free_port

PGBOUNCER_PATHS = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]


def find_pgbouncer() -> str | None:
    """The pgbouncer binary: $PLUNK_SQL_PGBOUNCER, the Debian paths, or $PATH."""
    explicit = os.environ.get("PLUNK_SQL_PGBOUNCER")
    for cand in [explicit] if explicit else [*PGBOUNCER_PATHS, shutil.which("pgbouncer")]:
        if cand and Path(cand).is_file():
            return cand
    return None


def pgbouncer_version(binary: str | None = None) -> tuple[int, ...] | None:
    """(major, minor[, patch]) of the pgbouncer binary, e.g. (1, 18, 0); None if unknown."""
    binary = binary or find_pgbouncer()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    for word in out.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(x.isdigit() for x in parts):
            return tuple(int(x) for x in parts)
    return None


@dataclass
class PgBouncer:
    port: int
    root: Path
    process: subprocess.Popen[bytes]
    user: str = "postgres"
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.root / "pgbouncer.log"

    def url(self, dbname: str, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_pgbouncer(
    server_host: str,
    server_port: int,
    *,
    users: list[str],
    pool_mode: str = "transaction",
    pool_size: int = 4,
    settings: dict[str, str] | None = None,
) -> PgBouncer:
    """Start PgBouncer in `pool_mode` forwarding to the server; waits until it accepts.

    pool_size: server connections per (database, user) pair. Small on purpose, so
    clients share server connections as they do in production."""
    binary = find_pgbouncer()
    if binary is None:
        raise RuntimeError("pgbouncer not found: apt-get install pgbouncer")
    run_as = "postgres" if os.geteuid() == 0 else ""
    root = Path(tempfile.mkdtemp(prefix="plunk_sql_pgbouncer_"))
    port = free_port()
    (root / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in users))
    conf = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(root / "userlist.txt"),
        "pool_mode": pool_mode,
        "default_pool_size": str(pool_size),
        "max_client_conn": "200",
        "logfile": str(root / "pgbouncer.log"),
        "admin_users": users[0],
        "server_reset_query": "DISCARD ALL",
    }
    conf |= settings or {}
    lines = ["[databases]", f"* = host={server_host} port={server_port}", "", "[pgbouncer]"]
    lines += [f"{k} = {v}" for k, v in conf.items()]
    (root / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
    if run_as:
        os.chmod(root, 0o755)
        for path in [root, *root.iterdir()]:
            shutil.chown(path, run_as, run_as)
    cmd = [binary, str(root / "pgbouncer.ini")]
    if run_as:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bouncer = PgBouncer(port=port, root=root, process=process, user=users[0])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = bouncer.log()
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return bouncer
        except OSError:
            time.sleep(0.05)
    bouncer.stop()
    raise RuntimeError("pgbouncer did not start listening within 15s")
