"""A real PostgreSQL server for the tests and the benchmarks: Debian's
``postgresql`` binaries, a temporary data directory, 127.0.0.1 and a free port.

PostgreSQL refuses to run as root: under root, the server runs as the
``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time


def postgres_binaries() -> str | None:
    """The directory of initdb and pg_ctl, or None if PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(versions[-1]) if versions else None


class PostgresServer:
    """``durable=False`` (the tests): no fsync, as nothing here survives a power cut."""

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable
        self.bin = postgres_binaries()
        assert self.bin, "PostgreSQL is not installed: apt-get install postgresql"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        # (not under pytest's tmp_path: its parents are private to root)
        self.directory = tempfile.mkdtemp(prefix="scrapy-resume-pg-")
        os.chmod(self.directory, 0o755)
        self.data = os.path.join(self.directory, "data")
        os.mkdir(self.data, 0o700)
        if self.as_postgres:
            shutil.chown(self.directory, "postgres")
            shutil.chown(self.data, "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.start()

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, os.path.join(self.bin, program), *args],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory}"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "start", "-w", "-D", self.data, "-o", options,
                  "-l", os.path.join(self.directory, "server.log"))

    def stop(self, mode: str = "fast") -> None:
        """``mode="immediate"``: like a crash of the server, mid-transaction."""
        self._run("pg_ctl", "stop", "-w", "-D", self.data, "-m", mode)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url()).close()
                return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "PostgreSQL did not come back"
                time.sleep(0.1)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # (stopped already)
        shutil.rmtree(self.directory, ignore_errors=True)
