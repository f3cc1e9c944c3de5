"""`--history`: does a notification cost more when a million orders came before it?

Two databases differ only in history: 1,000 and 1,000,000 paid orders, bulk-loaded in
SQL with everything the service would have written for them (items, tickets with
their entitlements, payment transactions, notifications, order events, stock
counters), then vacuumed and analysed like a database that has been running. The
same server configuration runs orders and notifications on each, alternating, and
the ratio of notification throughput (big / small) is the answer; target >= 0.9.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from bench import seed
from bench.measure import Options, check_invariants, load, log_dir, median, timed
from bench.pg import Postgres
from bench.server import Server
from bench.suites import service_rep, warm_up

SMALL = 1_000
TARGET = 0.9

# Run in order, in one transaction; %(t)s the tenant, %(n)s orders, %(o)s/%(i)s/%(k)s the
# ids already used by orders, order items and tickets. One ticket per item, one unit each.
LOAD = [
    """CREATE TEMP TABLE shape ON COMMIT DROP AS
       WITH prod AS (SELECT row_number() OVER (ORDER BY product_id) AS j, id, product_id,
                            name, price FROM products WHERE tenant_id = %(t)s)
       SELECT k, j, id AS product_pk, product_id, name, price
       FROM generate_series(1, 3) AS k JOIN prod ON prod.j <= k""",
    """CREATE TEMP TABLE total ON COMMIT DROP AS
       SELECT k, sum(price) AS amount, count(*) AS units FROM shape GROUP BY k""",
    """CREATE TEMP TABLE h ON COMMIT DROP AS
       SELECT g, g %% 3 + 1 AS k, %(o)s + g AS order_id, b.ids[1 + g %% b.n] AS user_id,
              now() - make_interval(secs => (%(n)s - g) * 2) AS at
       FROM generate_series(1, %(n)s) AS g,
            (SELECT array_agg(id ORDER BY id) AS ids, count(*)::int AS n FROM users
             WHERE tenant_id = %(t)s AND name LIKE 'buyer %%') AS b""",
    """INSERT INTO orders (id, tenant_id, user_id, out_trade_no, status, payment_status,
           total_amount, currency, gateway, transaction_id, paid_at, needs_refund,
           created_at, updated_at, expires_at)
       SELECT h.order_id, %(t)s, h.user_id, 'H' || lpad(h.g::text, 20, '0'), 'PAID', 2,
              total.amount, 'CNY', 'mock', 'HIST-' || h.g, h.at + interval '30 s', false,
              h.at, h.at + interval '30 s', h.at + interval '15 min'
       FROM h JOIN total USING (k)""",
    """INSERT INTO order_items (id, tenant_id, order_id, product_pk, product_id, product_name,
           quantity, unit_price, amount)
       SELECT %(i)s + (h.g - 1) * 3 + s.j, %(t)s, h.order_id, s.product_pk, s.product_id,
              s.name, 1, s.price, s.price
       FROM h JOIN shape s USING (k)""",
    # What issuance copies onto each ticket: the product's entitlements in its order.
    """CREATE TEMP TABLE ents ON COMMIT DROP AS
       SELECT s.product_pk,
              coalesce(json_agg(json_build_object('code', e.code, 'name', e.name,
                                                  'uses_total', e.uses, 'uses_left', e.uses)
                                ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL), '[]') AS list,
              coalesce(sum(e.uses), 0) AS uses_left
       FROM (SELECT DISTINCT product_pk FROM shape) AS s
            LEFT JOIN product_entitlements e ON e.product_pk = s.product_pk
       GROUP BY s.product_pk""",
    # '0' is not in the ticket-code alphabet: no history code can equal a real one.
    """INSERT INTO tickets (id, tenant_id, order_id, order_item_id, unit_index, user_id,
           ticket_code, product_id, product_name, status, issued_at, entitlements, uses_left)
       SELECT %(k)s + (h.g - 1) * 3 + s.j, %(t)s, h.order_id, %(i)s + (h.g - 1) * 3 + s.j, 0,
              h.user_id, 'TKT-0' || lpad(((h.g - 1) * 3 + s.j)::text, 15, '0'),
              s.product_id, s.name, 'ACTIVE', h.at + interval '30 s', ents.list, ents.uses_left
       FROM h JOIN shape s USING (k) JOIN ents USING (product_pk)""",
    """INSERT INTO payment_transactions (tenant_id, gateway, gateway_txn_id, order_id, amount,
           status, outcome, applied, refunded, response, created_at)
       SELECT %(t)s, 'mock', 'HIST-' || h.g, h.order_id, total.amount, 'SUCCESS', 'processed',
              true, false, json_build_object('status', 'processed', 'order_id', h.order_id,
              'order_status', 'PAID', 'tickets_issued', '[]'::json), h.at + interval '30 s'
       FROM h JOIN total USING (k)""",
    """INSERT INTO notifications (tenant_id, gateway, event_type, gateway_txn_id, order_id,
           amount, trade_status, verification, outcome, http_status, headers, body,
           request_id, received_at)
       SELECT %(t)s, 'mock', 'payment', 'HIST-' || h.g, h.order_id, total.amount, 'SUCCESS',
              'not_required', 'processed', 200, '{"content-type": "application/json"}'::json,
              json_build_object('order_id', h.order_id, 'gateway_txn_id', 'HIST-' || h.g,
                                'status', 'SUCCESS', 'amount', total.amount)::text,
              md5(h.g::text), h.at + interval '30 s'
       FROM h JOIN total USING (k)""",
    """INSERT INTO order_events (tenant_id, order_id, from_state, to_state, accepted, reason,
           created_at)
       SELECT %(t)s, h.order_id, 0, 2, true, 'mock HIST-' || h.g || ' SUCCESS',
              h.at + interval '30 s' FROM h""",
    """UPDATE products p SET sold = p.sold + c.units, stock = p.stock - c.units
       FROM (SELECT s.product_pk, count(*) AS units FROM h JOIN shape s USING (k)
             GROUP BY s.product_pk) AS c
       WHERE p.id = c.product_pk""",
]
SEQUENCES = ("orders", "order_items", "tickets")
MAINTAIN = ("orders", "order_items", "tickets", "payment_transactions", "notifications",
            "order_events", "products")

# The lookups a notification makes, with the index each must use whatever the history.
PLANS = {
    "lock the order": "SELECT * FROM orders WHERE tenant_id = %(t)s AND id = %(o)s FOR UPDATE",
    "find the gateway transaction": "SELECT * FROM payment_transactions WHERE tenant_id = %(t)s "
                                    "AND gateway = 'mock' AND gateway_txn_id = 'HIST-7'",
    "items of the order": "SELECT * FROM order_items WHERE tenant_id = %(t)s "
                          "AND order_id = %(o)s ORDER BY id",
    "entitlements to copy": "SELECT found.* FROM unnest(ARRAY[1, 2, 3]::bigint[]) AS k(value) "
                            "CROSS JOIN LATERAL (SELECT * FROM product_entitlements "
                            "WHERE tenant_id = %(t)s AND product_pk = k.value OFFSET 0) AS found "
                            "ORDER BY found.id",
    "a buyer's tickets, newest first": "SELECT * FROM tickets WHERE tenant_id = %(t)s "
                                       "AND user_id = %(u)s ORDER BY id DESC LIMIT 200",
    "orders due to expire": "SELECT tenant_id, id FROM orders WHERE status = 'PENDING' "
                            "AND expires_at < now() ORDER BY expires_at LIMIT 100",
}


def bulk_load(pg: Postgres, dbname: str, tenant_id: int, n: int) -> None:
    """Add `n` paid orders of history with everything the service writes for one."""
    with psycopg.connect(pg.conninfo(dbname)) as conn:
        conn.execute("SET synchronous_commit = off")  # this loading session only
        ids = {"t": tenant_id, "n": n}
        for key, table in (("o", "orders"), ("i", "order_items"), ("k", "tickets")):
            ids[key] = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
        for statement in LOAD:
            conn.execute(statement, ids)
        for table in SEQUENCES:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT max(id) FROM {table}))")
        conn.commit()
    with psycopg.connect(pg.conninfo(dbname), autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(MAINTAIN)}")
        conn.execute("CHECKPOINT")


def prepare(pg: Postgres, dbname: str, n: int) -> tuple[seed.Bench, dict[str, Any]]:
    """A bench database with `n` orders of history; its size and how long it took."""
    started = time.perf_counter()
    bench = seed.prepare(pg.recreate(dbname))
    bulk_load(pg, dbname, bench.tenant_id, n)
    size = pg.execute("SELECT pg_size_pretty(pg_database_size(%s))", (dbname,))[0][0]
    return bench, {"history_orders": n, "database_size": size,
                   "load_seconds": round(time.perf_counter() - started, 1)}


def plans(pg: Postgres, dbname: str, tenant_id: int) -> dict[str, list[str]]:
    """EXPLAIN of each lookup on the big database: index scans, not table scans."""
    with psycopg.connect(pg.conninfo(dbname)) as conn:
        o = conn.execute("SELECT max(id) FROM orders").fetchone()[0]
        u = conn.execute("SELECT user_id FROM orders WHERE id = %s", (o,)).fetchone()[0]
        out = {}
        for name, sql in PLANS.items():
            rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql,
                                {"t": tenant_id, "o": o, "u": u}).fetchall()
            out[name] = [r[0] for r in rows]
        conn.rollback()
    return out


def run(pg: Postgres, opts: Options, big: int) -> dict[str, Any]:
    """Orders and notifications against both histories, alternating, per repetition."""
    phases: dict[str, float] = {}
    dbs: dict[str, dict[str, Any]] = {}
    for label, n in (("small", SMALL), ("big", big)):
        with timed(phases, f"prepare_{label}"):
            bench, info = prepare(pg, f"bench_history_{label}", n)
            server = Server(bench.url, opts.workers, log_dir() / f"server-history-{label}.log")
            dbs[label] = {"bench": bench, "info": info, "server": server.start(),
                          "db": bench.database(), "reps": []}
    try:
        with timed(phases, "warm_up"):
            for d in dbs.values():
                warm_up(d["server"], d["db"], d["bench"], opts)
        for r in range(opts.reps):
            # small first, then big first: neither always runs on the warmer machine
            for label in (("small", "big") if r % 2 == 0 else ("big", "small")):
                d = dbs[label]
                rep = service_rep(d["server"], d["db"], d["bench"], opts, f"h{label}{r}",
                                  pg, f"bench_history_{label}")
                d["reps"].append(rep)
                print(f"[history {label} rep {r + 1}] orders {rep['orders']['per_second']}/s, "
                      f"notifications {rep['notifications']['per_second']}/s", flush=True)
    finally:
        for d in dbs.values():
            d["server"].stop()
    return _result(pg, dbs, phases)


def _result(pg: Postgres, dbs: dict[str, Any], phases: dict[str, float]) -> dict[str, Any]:
    small, big = dbs["small"], dbs["big"]
    out: dict[str, Any] = {"phase_seconds": phases}
    for kind in ("notifications", "orders"):
        per_rep = [b[kind]["per_second"] / s[kind]["per_second"]
                   for s, b in zip(small["reps"], big["reps"], strict=True)]
        out[f"{kind}_big_vs_small"] = {"value": median(per_rep),
                                       "per_rep": [round(v, 4) for v in per_rep],
                                       "target": TARGET if kind == "notifications" else None}
    out["notifications_big_vs_small"]["met"] = out["notifications_big_vs_small"]["value"] >= TARGET
    for label, d in dbs.items():
        with timed(phases, f"check_{label}"):
            check = check_invariants(d["bench"].url, d["bench"].tenant_id)
        out[label] = {**d["info"], "reps": d["reps"], "check": check,
                      "median": {k: {m: median([rep[k][m] for rep in d["reps"]])
                                     for m in ("per_second", "p50_ms", "p99_ms")}
                                 for k in ("orders", "notifications")}}
        d["db"].dispose()
    out["plans_on_big"] = plans(pg, "bench_history_big", big["bench"].tenant_id)
    return out
