"""What the service's PostgreSQL backends are doing during a run, sampled from pg_stat_activity.

`idle in transaction` means the backend waits for Python in the middle of a
transaction (row locks held); `active Lock/...` waits for another transaction's lock;
`active running` is the database working. Averages are backends per sample.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import psycopg

QUERY = ("SELECT state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity "
         "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'")


def _bucket(state: str | None, wait_type: str | None, wait: str | None) -> str:
    if state != "active":
        return state or "unknown"
    return f"active {wait_type}/{wait}" if wait_type else "active running"


class WaitSampler:
    """Samples the backends of one database every `interval` seconds while in use."""

    def __init__(self, conninfo: str, dbname: str, interval: float = 0.05) -> None:
        self.conninfo, self.dbname, self.interval = conninfo, dbname, interval
        self.counts: Counter[str] = Counter()
        self.blocked: Counter[str] = Counter()  # statements waiting for a lock
        self.samples = 0
        self.new_sessions: int | None = None  # connections opened while sampling
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-wait-sampler", daemon=True)

    def _sessions(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                           (self.dbname,)).fetchone()
        return int(row[0]) if row else 0

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            first = self._sessions(conn)
            while not self._stop.wait(self.interval):
                for state, wait_type, wait, query in conn.execute(QUERY, (self.dbname,)):
                    self.counts[_bucket(state, wait_type, wait)] += 1
                    if wait_type == "Lock":
                        self.blocked[" ".join((query or "").split())] += 1
                self.samples += 1
            self.new_sessions = self._sessions(conn) - first

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        """Average backends per sample in each state, busiest first."""
        n = max(self.samples, 1)
        return {"samples": self.samples,
                "backends": {k: round(v / n, 2) for k, v in self.counts.most_common()},
                "waiting_for_a_lock": {k: round(v / n, 2) for k, v in self.blocked.most_common(5)},
                "connections_opened": self.new_sessions}
