"""The optional PostgreSQL backend: a private cluster inside the sandbox state dir.

Needs the server from the system (Debian/Ubuntu: ``apt-get install postgresql``) and a
driver from PyPI (``pip install psycopg2-binary``). The cluster listens on 127.0.0.1 only,
trusts local connections (test data, loopback only) and runs with fsync off. Messaging
stays in-process, so no RabbitMQ is needed. As root the server runs as the ``postgres``
system user, which PostgreSQL requires.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from heatgen.errors import SandboxError
from heatgen.sandbox.settings import HOST, SandboxConfig

DB_USER = "heatgen"
DATABASES = ("keystone", "heat")
INSTALL_HINT = "install PostgreSQL: apt-get install postgresql (Debian/Ubuntu)"


def _binary(name: str) -> str:
    """``initdb``/``pg_ctl``: on PATH, or where Debian keeps them (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise SandboxError(f"--backend postgres: `{name}` not found; {INSTALL_HINT}")


def driver() -> str:
    """The SQLAlchemy dialect+driver to use, from what is installed."""
    try:
        import psycopg2  # noqa: F401

        return "postgresql+psycopg2"
    except ImportError:
        pass
    try:
        import psycopg  # noqa: F401

        return "postgresql+psycopg"
    except ImportError:
        raise SandboxError(
            "--backend postgres needs a PostgreSQL driver: pip install psycopg2-binary"
        ) from None


def database_url(config: SandboxConfig, name: str) -> str:
    return f"{driver()}://{DB_USER}@{HOST}:{config.postgres_port}/{name}"


def _cluster(config: SandboxConfig) -> Path:
    return config.data_dir / "postgres"


def log_path(config: SandboxConfig) -> Path:
    # Inside the cluster dir: as root the server runs as `postgres` and cannot write log/.
    return _cluster(config) / "server.log"


def _owner_prefix() -> list[str]:
    """Run server commands as `postgres` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise SandboxError(
            "--backend postgres as root needs the `postgres` system user; "
            + INSTALL_HINT
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise SandboxError("--backend postgres as root needs `runuser` (util-linux)")
    return [runuser, "-u", "postgres", "--"]


def _run(config: SandboxConfig, command: list[str], timeout: float) -> None:
    result = subprocess.run(
        [*_owner_prefix(), *command], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout, check=False, cwd="/",
    )
    if result.returncode != 0:
        with open(config.log_file("postgres-setup"), "a", encoding="utf-8") as log:
            log.write(result.stdout + result.stderr)
        raise SandboxError(
            f"postgres: `{Path(command[0]).name} {command[1]}` failed (exit "
            f"{result.returncode}); see {config.log_file('postgres-setup')}"
        )


def _prepare_for_owner(config: SandboxConfig, cluster: Path) -> None:
    if os.geteuid() != 0:
        return
    owner = pwd.getpwnam("postgres")
    # The postgres user must traverse (not list) the state dir to reach its cluster.
    for directory in (config.state_dir, config.data_dir):
        os.chmod(directory, 0o711)
    os.chown(cluster, owner.pw_uid, owner.pw_gid)
    reachable = subprocess.run(
        [*_owner_prefix(), "test", "-x", str(config.data_dir)], check=False, cwd="/",
        stdin=subprocess.DEVNULL, capture_output=True,
    )
    if reachable.returncode != 0:
        raise SandboxError(
            f"--backend postgres as root: the postgres user cannot reach {config.data_dir} "
            "(a parent directory is private); use a --state-dir whose parents others may "
            "traverse, e.g. under /var/lib or /srv"
        )


def start(config: SandboxConfig, deadline: float) -> None:
    """initdb on first use, start the server, create the databases; writes run/postgres.pid."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    driver()  # fail early, before anything is created
    cluster = _cluster(config)
    if not (cluster / "PG_VERSION").exists():
        cluster.mkdir(parents=True, exist_ok=True, mode=0o700)
        _prepare_for_owner(config, cluster)
        _run(config, [initdb, "-D", str(cluster), "-U", DB_USER, "--auth=trust",
                      "-E", "UTF8", "--no-locale"], timeout=120)
    else:
        _prepare_for_owner(config, cluster)
    options = " ".join([
        f"-c listen_addresses={HOST}", f"-p {config.postgres_port}",
        f"-c unix_socket_directories={cluster}", "-c fsync=off",
        "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=200",
    ])
    wait = max(10, int(deadline - time.monotonic()))
    _run(config, [pg_ctl, "start", "-D", str(cluster), "-l", str(log_path(config)), "-w",
                  "-t", str(wait), "-o", options], timeout=wait + 10)
    pid = (cluster / "postmaster.pid").read_text(encoding="ascii").split()[0]
    config.pid_file("postgres").write_text(f"{pid}\n", encoding="ascii")
    create_databases(config)


def create_databases(config: SandboxConfig, names: tuple[str, ...] = DATABASES) -> None:
    """The databases ``names`` that do not exist yet, owned by the sandbox's user."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        database_url(config, "postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as conn:
            present = {row[0] for row in conn.exec_driver_sql("SELECT datname FROM pg_database")}
            for name in names:
                if name not in present:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}" OWNER "{DB_USER}"')
    finally:
        engine.dispose()


def stop(config: SandboxConfig, timeout: float) -> None:
    """``pg_ctl stop -m fast``; nothing to do if the cluster is not running."""
    cluster = _cluster(config)
    if not (cluster / "postmaster.pid").exists():
        return
    try:
        pg_ctl = _binary("pg_ctl")
        _run(config, [pg_ctl, "stop", "-D", str(cluster), "-m", "fast", "-w",
                      "-t", str(int(timeout))], timeout=timeout + 10)
    except SandboxError:
        # A stale postmaster.pid after a crash: pg_ctl start copes with it later.
        if (cluster / "postmaster.pid").exists():
            pid = int((cluster / "postmaster.pid").read_text(encoding="ascii").split()[0])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            raise
