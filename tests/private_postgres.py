"""A PostgreSQL cluster of a test's own, on a free port, that the test may stop, kill and restart.

The fault drills take the database away mid-batch. The machine's shared server must never be
stopped (other tests, `make up` and other helpers use it), so :class:`PrivatePostgres` makes a
throwaway cluster with `initdb` in a temporary folder (trust authentication, its unix socket in that
folder too, listening on 127.0.0.1 only) and drives it with `pg_ctl`: `stop` is a fast shutdown (as
an operator's restart), `kill` an immediate one (no checkpoint: crash recovery at the next start, as
after a power cut), `restart` keeps the data. `pg_ctl` is used rather than signals of our own so
that the postmaster and every backend go together.

initdb refuses to run as root; under root (a container) the cluster runs as the `postgres` account,
which owns the temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from results_service.db import apply_migrations
from single_host.processes import free_port

BIN_DIRS = (Path("/usr/local/bin"), Path("/usr/lib/postgresql/15/bin"))
START_TIMEOUT = 60
# Durability against an operating-system crash is not what the drills test (an immediate shutdown
# still recovers from the WAL), so the cluster skips fsync to keep the suite fast.
SERVER_OPTIONS = ("-c fsync=off", "-c full_page_writes=off", "-c max_connections=200")


def _binary(name: str) -> str:
    for folder in BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found in {', '.join(map(str, BIN_DIRS))} or on PATH: install PostgreSQL")
    return found


class PrivatePostgres:
    """One throwaway cluster; `start()` creates it on first use, `close()` stops it and deletes its folder."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="dicomflow-pg-"))
        self.data_dir = self.folder / "data"
        self.log_path = self.folder / "server.log"
        self._account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._account is not None:
            os.chown(self.folder, self._account.pw_uid, self._account.pw_gid)

    def url(self, database: str = "postgres") -> str:
        """A DSN of `database` on this cluster (over TCP, as the services connect)."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        user = self._account.pw_uid if self._account else None
        group = self._account.pw_gid if self._account else None
        done = subprocess.run(argv, user=user, group=group, capture_output=True, text=True, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")

    def _pg_ctl(self, *args: str) -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.data_dir), *args)

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def start(self) -> None:
        """Create the cluster if needed, then start it and wait until it accepts connections."""
        if not self.data_dir.exists():
            self._run(_binary("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--no-sync")
        where = (f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.folder}")
        options = " ".join((*where, *SERVER_OPTIONS))
        self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT), "-l", str(self.log_path), "-o", options)

    def stop(self) -> None:
        """A fast shutdown: sessions are disconnected, a checkpoint is written."""
        self._pg_ctl("stop", "-w", "-m", "fast")

    def kill(self) -> None:
        """An immediate shutdown: every process quits at once, no checkpoint; the next start recovers from WAL."""
        self._pg_ctl("stop", "-w", "-m", "immediate")

    def restart(self) -> None:
        """Stop (fast) and start again on the same port with the same data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the cluster if it runs and delete its folder."""
        if self.running:
            with contextlib.suppress(RuntimeError):
                self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def create_database(self, name: str) -> str:
        """Create the database `name` with the system's schema (its migrations); returns its URL."""
        url = self.url(name)
        await apply_migrations(url)
        return url

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
