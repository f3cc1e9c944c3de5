"""The server under test, as in production, and where the machine's CPU went.

`ticketing serve --workers N` with JSON logs at WARNING; CPU seconds of a process
tree come from /proc, so each run can say how much of the two cores Python, the
database and the load generator took.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.pgcluster import free_port

TICK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 on: state, ppid, ...


def tree_cpu(root: int | None) -> float | None:
    """CPU seconds of `root` and its descendants, including children it has reaped."""
    if root is None:
        return None
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    if root not in stats:
        return None
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        todo.extend(children.get(pid, []))
    return total / TICK


def machine_cpu() -> tuple[float, float, float]:
    """(busy, total, stolen) CPU seconds of the whole machine since boot, all cores.

    Stolen is time a virtual machine's cores were ready to run but its host ran
    something else: not this machine's work, so not busy, but a measure of how
    disturbed a measurement was (on a shared host it comes in bursts)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, steal = values[3] + values[4], values[7]
    total = sum(values[:8])
    return (total - idle - steal) / TICK, total / TICK, steal / TICK


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def backends_cpu(dbname: str) -> dict[int, float]:
    """CPU seconds of each backend serving `dbname`: the database's cost of what it was sent."""
    marker = f" {dbname} ".encode()
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _cmdline(int(entry)).startswith(b"postgres: ") \
                and marker in _cmdline(int(entry)).replace(b"\0", b" ") + b" ":
            fields = _stat(int(entry))
            if fields is not None:
                out[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def backends_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends spent between two `backends_cpu` readings (new backends in full)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def trees_cpu(roots: list[int | None]) -> float | None:
    """CPU seconds of several process trees together (None if any is unknown)."""
    values = [tree_cpu(pid) for pid in roots]
    return None if not values or None in values else sum(values)  # type: ignore[arg-type]


class CpuMeter:
    """CPU seconds spent by named groups of process trees (and the machine) meanwhile."""

    def __init__(self, roots: dict[str, list[int | None]], dbname: str | None = None) -> None:
        self.roots = roots
        self.dbname = dbname  # also count the backends serving this database alone

    def __enter__(self) -> CpuMeter:
        self.before = {name: trees_cpu(pids) for name, pids in self.roots.items()}
        self.backends = backends_cpu(self.dbname) if self.dbname else {}
        self.machine_before = machine_cpu()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        wall = time.perf_counter() - self.started
        after = {name: trees_cpu(pids) for name, pids in self.roots.items()}
        busy, total, stolen = machine_cpu()
        busy -= self.machine_before[0]
        total -= self.machine_before[1]
        stolen -= self.machine_before[2]
        self.result = {"wall_seconds": round(wall, 3),
                       "machine_busy_fraction": round(busy / max(total, 1e-9), 3),
                       "machine_busy_seconds": round(busy, 3),
                       "stolen_fraction": round(stolen / max(total, 1e-9), 3)}
        if self.dbname:
            self.result["backends_cpu_seconds"] = round(
                backends_delta(self.backends, backends_cpu(self.dbname)), 3)
        for name, value in after.items():
            start = self.before.get(name)
            self.result[f"{name}_cpu_seconds"] = (
                None if value is None or start is None else round(value - start, 3))


class Server:
    """`ticketing serve` in its production configuration, in a subprocess."""

    def __init__(self, database_url: str, workers: int, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = log_path
        self.env = {**os.environ, "TICKETING_DATABASE_URL": database_url,
                    "TICKETING_LOG_FORMAT": "json", "TICKETING_LOG_LEVEL": "WARNING",
                    "TICKETING_ADMIN_TOKEN": "bench-admin-token", **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        """Start and wait until /healthz answers."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ticketing.cli.main", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            if self._healthy():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-3000:]}")

    def _healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def worker_pids(self) -> list[int]:
        """The uvicorn workers (the supervisor's children, its resource tracker aside)."""
        if self.proc is None:
            return []
        kids = [int(e) for e in os.listdir("/proc") if e.isdigit()
                and (f := _stat(int(e))) is not None and int(f[1]) == self.proc.pid
                and b"resource_tracker" not in _cmdline(int(e))]
        return kids or [self.proc.pid]

    def connections_per_worker(self) -> list[int]:
        """Client connections each worker holds right now, busiest first.

        Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel picks
        one per connection by a hash of its addresses: a fixed set of keep-alive
        connections splits roughly, not exactly, evenly.
        """
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                    inodes.add(f"socket:[{fields[9]}]")
        counts = []
        for pid in self.worker_pids():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                counts.append(sum(_readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds))
            except OSError:
                counts.append(0)
        return sorted(counts, reverse=True)

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL if it lingers."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None
