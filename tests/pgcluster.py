"""A throwaway PostgreSQL cluster for the test suite, made with the `pg_ctl` on PATH.

PostgreSQL refuses to run as root; when the suite runs as root the cluster is
owned by, and run as, the `postgres` system user instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ClusterError(RuntimeError):
    """The cluster could not be made or started (the suite fails; it never skips)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
            return str(candidate)
        raise ClusterError(f"{name} not found on PATH: install PostgreSQL server binaries")
    return path


class Cluster:
    """initdb + pg_ctl start on a free port; `stop()` removes everything."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="ticketing-pg-"))
        self.data = self.base / "data"
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ClusterError("running as root needs a 'postgres' system user") from exc
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.user is not None:
            cmd = [_tool("runuser"), "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> str:
        """Create and start the cluster; returns a superuser URL."""
        self._run(_tool("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-instructions")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.base} -c max_connections=300 "
                "-c shared_buffers=128MB")
        self._run(_tool("pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.base / "log"), "-w", "-t", "60", "start")
        url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return url
            except OSError:
                time.sleep(0.2)
        raise ClusterError("cluster did not accept connections")

    def stop(self) -> None:
        try:
            self._run(_tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except ClusterError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)
