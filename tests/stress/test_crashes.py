"""Crash safety: servers killed with SIGKILL and database connections cut, mid-run.

The gateway resends whatever got no answer or a 5xx until it gets a 2xx or 4xx. After
the run every order is where its script says, each applied outcome (processed, failed,
needs_refund, ignored) is stored exactly once, every 200 is the stored first answer
(never a wrong one), and the checker passes.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from tests.audit.books import violations
from tests.conftest import _conninfo
from tests.stress import scenarios
from tests.stress.gateway import Gateway, run
from ticketing.db import Database

# Histories that need no expiry: the chaos must not be mistaken for the clock.
KINDS = {k: v for k, v in scenarios.KINDS.items() if k not in scenarios.SHORT_TTL_KINDS}
APPLIED = ("processed", "failed", "needs_refund", "ignored")


def _chaos_run(pg_db: Database, servers: list, orders: int,
               chaos: Callable[[threading.Event], int]) -> int:
    """Play `orders` scripts while `chaos` runs in a thread; check the books; chaos count."""
    tenants = ["chaos"]
    headers = scenarios.setup_tenants(servers[0].base_url, tenants)
    scripts = scenarios.make_scripts(random.Random(orders), orders, tenants, kinds=KINDS)
    urls = [s.base_url for s in servers]
    stop, hits = threading.Event(), []

    async def storm():
        async with Gateway(urls, concurrency=24, deadline=240) as gw:
            await asyncio.gather(*(scenarios.create_order(gw, s, headers["chaos"]) for s in scripts))
            worker = threading.Thread(target=lambda: hits.append(chaos(stop)))
            worker.start()
            try:
                await asyncio.gather(*(scenarios.play(gw, s) for s in scripts))
            finally:
                stop.set()
                await asyncio.to_thread(worker.join)

    run(storm())
    retried = sum(d.retried for s in scripts for d in s.deliveries)
    assert retried > 0, "the chaos never hit a request; the test proved nothing"
    scenarios.check_final_state(pg_db, scripts, tenants)
    scenarios.check_answers(pg_db, scripts, exact=False)
    stored, expected = scenarios.stored_outcomes(pg_db, tenants), scenarios.expected_outcomes(scripts)
    assert {k: stored[k] for k in APPLIED} == {k: expected[k] for k in APPLIED}
    assert stored["replayed"] >= expected["replayed"] and stored["conflict"] >= expected["conflict"]
    assert sum(stored.values()) >= scenarios.sent_notifications(scripts)
    assert violations(pg_db) == []
    return hits[0]


def _killer(server, kills: int, pause: float) -> Callable[[threading.Event], int]:
    def chaos(stop: threading.Event) -> int:
        done = 0
        while done < kills and not stop.wait(pause):
            server.stop(signal.SIGKILL)
            done += 1
            server.start()
        return done
    return chaos


@pytest.mark.parametrize(("orders", "kills"), [
    pytest.param(100, 3, id="3-kills"),
    pytest.param(1500, 12, id="12-kills", marks=pytest.mark.stress)])
def test_sigkill_mid_run_loses_and_doubles_nothing(pg_url, pg_db, live_server_factory, orders, kills):
    server = live_server_factory(pg_url, workers=2)
    done = _chaos_run(pg_db, [server], orders, _killer(server, kills, pause=0.7))
    assert done == kills


def _terminator(pg_url: str) -> Callable[[threading.Event], int]:
    """Cut every other connection to the test database, over and over."""
    def chaos(stop: threading.Event) -> int:
        cut = 0
        with psycopg.connect(_conninfo(pg_url), autocommit=True) as conn:
            while not stop.wait(random.uniform(0.1, 0.3)):
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
                cut += sum(1 for (ok,) in rows if ok)
        return cut
    return chaos


@pytest.mark.parametrize("orders", [pytest.param(40, id="40-orders"),
                                    pytest.param(1500, id="1500-orders", marks=pytest.mark.stress)])
def test_connections_cut_mid_transaction_answer_5xx_never_a_wrong_200(
        pg_url, pg_db, live_server_factory, orders):
    servers = [live_server_factory(pg_url, workers=2), live_server_factory(pg_url, workers=2)]
    started = time.monotonic()
    cut = _chaos_run(pg_db, servers, orders, _terminator(pg_url))
    assert cut > 0, f"no connection was cut in {time.monotonic() - started:.0f}s"
