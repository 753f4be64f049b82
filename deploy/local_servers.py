"""Private PostgreSQL and Redis servers for the tests and benchmarks, started the way tests/conftest.py starts Triton.

Each runs from the machine's binaries (``make postgres``, ``make redis``: Debian's packages) on a free
loopback port, with its data in a fresh temporary directory that ``stop()`` removes. Nothing depends
on a server the machine happens to run (Debian's cluster on 5432, a system redis on 6379), so CI
needs none and a developer's own data is never touched. A server that cannot start raises, with the
end of its log: the tests that need it fail, loudly, and are never skipped.

PostgreSQL refuses to run as root (CI runs ``make test`` as root): then initdb and postgres run as the
``postgres`` system user that Debian's package creates, through ``setpriv``, which execs in place, so
the process we signal is the postmaster itself. (``runuser`` keeps a watching parent that turns a
stop into SIGKILL after 2 s, before a clean shutdown may have finished.)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from deploy.ports import free_port, wait_until

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POSTGRES_USER = "deepfake"  # the superuser initdb creates; trust auth, so no password
POSTGRES_DATABASE = "deepfake_test"
POSTGRES_SYSTEM_USER = "postgres"  # created by Debian's postgresql-common


class DatabaseStartError(RuntimeError):
    """A test database server is missing or did not start; the message says which, and why."""


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(process: subprocess.Popen, first_signal: signal.Signals) -> None:
    """``first_signal``, then SIGKILL if the server is still there after STOP_TIMEOUT_S."""
    if process.poll() is None:
        process.send_signal(first_signal)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class LocalServer:
    """A server the tests started: its process, port and private directory (data and log), all
    removed by ``stop``."""

    process: subprocess.Popen
    port: int
    directory: Path
    log_name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    @property
    def log_path(self) -> Path:
        return self.directory / self.log_name

    def stop(self) -> None:
        _stop_process(self.process, self.stop_signal)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class PostgresServer(LocalServer):
    user: str = POSTGRES_USER
    database: str = POSTGRES_DATABASE
    log_name: ClassVar[str] = "postgres.log"
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT  # fast shutdown: open sessions are ended, not waited for

    @property
    def url(self) -> str:
        """A SQLAlchemy URL (psycopg 3), as DEEPFAKE_DATABASE_URL takes it."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"


@dataclass
class RedisServer(LocalServer):
    log_name: ClassVar[str] = "redis.log"

    @property
    def url(self) -> str:
        """A redis:// URL, as DEEPFAKE_RATE_LIMIT_STORAGE (the ``limits`` library) takes it."""
        return f"redis://127.0.0.1:{self.port}/0"


def _version_key(bin_dir: str) -> tuple[int, ...]:
    version = Path(bin_dir).parent.name  # /usr/lib/postgresql/15/bin -> "15"
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def postgres_binaries() -> tuple[Path, Path]:
    """initdb and postgres: Debian's newest major version (not on PATH there), else those on PATH."""
    debian = sorted((str(Path(p).parent) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")), key=_version_key)
    if debian:
        return Path(debian[-1]) / "initdb", Path(debian[-1]) / "postgres"
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres:
        return Path(initdb), Path(postgres)
    raise DatabaseStartError(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): run `make postgres`"
    )


def _as_postgres_user(directory: Path) -> list[str]:
    """The command prefix that drops root to the postgres user (PostgreSQL will not run as root), after
    handing it the directory; nothing when we are not root."""
    if os.geteuid() != 0:
        return []
    try:
        account = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        raise DatabaseStartError(
            f"running as root, PostgreSQL needs the {POSTGRES_SYSTEM_USER!r} system user "
            "(Debian's package creates it): run `make postgres`"
        ) from None
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise DatabaseStartError("running as root, PostgreSQL is started through setpriv (util-linux): not found")
    os.chown(directory, account.pw_uid, account.pw_gid)
    return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]


def _postgres_answers(port: int, dbname: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=POSTGRES_USER, dbname=dbname, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def start_postgres(timeout_s: float = READY_TIMEOUT_S) -> PostgresServer:
    """initdb into a fresh directory, start postgres on a free 127.0.0.1 port, create the test database.

    Trust authentication, from 127.0.0.1 and the Unix socket in that private directory only; fsync
    and synchronous commits off: a crash loses nothing the tests need, and they run faster."""
    import psycopg

    initdb, postgres = postgres_binaries()
    directory = Path(tempfile.mkdtemp(prefix="deepfake-postgres-"))
    try:
        prefix = _as_postgres_user(directory)
        data, log_path = directory / "data", directory / "postgres.log"
        hba = directory / "pg_hba.conf"  # replaces initdb's, which also trusts ::1 and replication
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        hba.chmod(0o644)  # the server may read it as another user
        with log_path.open("ab") as log:
            result = subprocess.run(
                [*prefix, str(initdb), "-D", str(data), "-U", POSTGRES_USER, "-A", "trust"]
                + ["-E", "UTF8", "--locale=C", "--no-sync"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,  # the postgres user may not be able to enter ours
                timeout=timeout_s,
            )
        if result.returncode != 0:
            raise DatabaseStartError(
                f"initdb exited with {result.returncode} (a TMPDIR the postgres user cannot enter?):\n"
                + _log_tail(log_path)
            )
        port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(directory),
            "hba_file": str(hba),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        command = [*prefix, str(postgres), "-D", str(data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    server = PostgresServer(process, port, directory)
    try:
        # our process first: a server someone else started on this port must not pass as ours
        wait_until(
            lambda: process.poll() is None and _postgres_answers(port, "postgres"),
            timeout_s,
            "postgres",
            alive=lambda: process.poll() is None,
        )
        with psycopg.connect(
            host="127.0.0.1", port=port, user=POSTGRES_USER, dbname="postgres", autocommit=True
        ) as connection:
            served = connection.execute("SHOW data_directory").fetchone()
            if not served or Path(served[0]).resolve() != data.resolve():
                raise DatabaseStartError(f"port {port} is served by another PostgreSQL ({served})")
            connection.execute(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
    except BaseException as error:
        log = _log_tail(server.log_path)
        server.stop()
        if isinstance(error, Exception):
            raise DatabaseStartError(f"PostgreSQL did not start ({error}):\n{log}") from error
        raise
    return server


def _redis_pongs(port: int) -> bool:
    """A raw RESP PING: the redis client library need not be installed for the server to be waited for."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(timeout_s: float = READY_TIMEOUT_S) -> RedisServer:
    """redis-server on a free 127.0.0.1 port, in a fresh directory, persisting nothing (no RDB, no AOF)."""
    redis_server = shutil.which("redis-server")
    if not redis_server:
        raise DatabaseStartError("redis-server is not installed: run `make redis`")
    directory = Path(tempfile.mkdtemp(prefix="deepfake-redis-"))
    port = free_port()
    command = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(directory), "--daemonize", "no"]
    try:
        with (directory / "redis.log").open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    server = RedisServer(process, port, directory)
    try:
        wait_until(
            lambda: process.poll() is None and _redis_pongs(port),
            timeout_s,
            "redis-server",
            alive=lambda: process.poll() is None,
        )
    except BaseException as error:
        log = _log_tail(server.log_path)
        server.stop()
        if isinstance(error, Exception):
            raise DatabaseStartError(f"redis-server did not start ({error}):\n{log}") from error
        raise
    return server
