"""What a PostgreSQL connection sends, from libpq's protocol trace."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from ticketing.db import Database


@contextmanager
def client_messages(db: Database) -> Iterator[list[str]]:
    """The protocol messages libpq sends on connections opened inside the block."""
    from psycopg import pq

    fd, name = tempfile.mkstemp(suffix=".trace")
    sent: list[str] = []

    def on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.pgconn.trace(fd)
        dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    event.listen(db.engine, "connect", on_connect)
    db.engine.dispose()
    try:
        yield sent
    finally:
        event.remove(db.engine, "connect", on_connect)
        db.engine.dispose()
        os.close(fd)
        with open(name) as trace:
            sent.extend(line.split("\t", 2)[2].strip() for line in trace
                        if line.startswith("F\t") and line.count("\t") >= 2)
        os.unlink(name)


def since_last_begin(sent: list[str]) -> list[str]:
    """The kinds of message sent from the last BEGIN on (Query, Parse, Bind, Sync, ...);
    BEGIN is a Query of its own, or a Parse in a pipeline."""
    begin = max(i for i, m in enumerate(sent) if '"BEGIN"' in m)
    return [m.split("\t")[0] for m in sent[begin:]]


def exchanges(kinds: list[str]) -> int:
    """Round trips: a simple Query, or an extended-protocol exchange ended by Sync."""
    return kinds.count("Query") + kinds.count("Sync")
