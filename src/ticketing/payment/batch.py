"""Mock-gateway notifications that arrive together are applied together.

A sale opening sends a worker process many payment notifications at once. They go
through a group commit (kit.batching): a batch applies them in one transaction,
one statement per table for all of them instead of one per table for each, and
one COMMIT; nobody is answered before it.

Only the common case is batched (`success.apply_successes`): a verified SUCCESS
notification, first seen, for a pending order of the same amount, with no other
notification for that order or transaction id in the batch. Everything else (a
duplicate, a replay, a conflict, a bad signature, a failure or closing, a closed or
paid order, an unknown order) is answered after the batch by the one-at-a-time
path, `flows.notify_mock`, exactly as if it had arrived alone. If anything in a
batch fails, all of it rolls back and every notification in it takes that path,
which keeps it as `error` if it fails again.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

from ticketing.db import Database
from ticketing.kit.batching import Entry, GroupCommit
from ticketing.kit.errors import Invalid
from ticketing.kit.sql import Pipeline, plan_once
from ticketing.notification.service import kept_headers
from ticketing.payment import flows
from ticketing.payment.gateways import mock
from ticketing.payment.gateways.base import Received
from ticketing.payment.service import NotifyResult
from ticketing.payment.success import Success, apply_successes, is_success
from ticketing.tenant.service import find_tenant


@dataclass(frozen=True)
class MockNotification:
    """A mock notification as its request brought it."""

    slug: str
    raw: bytes
    headers: Any


def _candidates(session: Session, batch: list[Entry[MockNotification]]) -> list[Success]:
    """The batch's SUCCESS notifications of known tenants, as their bodies state them;
    not yet verified (see `_admit`)."""
    out = []
    for index, entry in enumerate(batch):
        waiting = entry.value
        tenant = find_tenant(session, waiting.slug)
        if tenant is None:
            continue
        try:
            notice = flows.mock_notice(waiting.raw)
        except Invalid:
            continue
        if not is_success(notice):
            continue
        received = Received(gateway=mock.NAME, body=waiting.raw.decode("utf-8", "replace"),
                            headers=kept_headers(waiting.headers), verification="unverified")
        out.append(Success(index, entry.context, tenant.id, notice, received))
    return out


def _admit(batch: list[Entry[MockNotification]], secrets: Callable[[], dict[int, str | None]]
           ) -> Callable[[Sequence[Success]], list[Success]]:
    """What keeps, of the candidates, those whose signature holds under their tenant's
    secret (read in the same round trip as their orders), one per order and txn id."""
    def admit(candidates: Sequence[Success]) -> list[Success]:
        secret_of = secrets()
        seen: set[Any] = set()
        out = []
        for s in candidates:
            waiting = batch[s.index].value
            verification = mock.verify(secret_of[s.tenant_id], waiting.raw,
                                       waiting.headers.get("x-mock-signature"))
            if verification == "failed":
                continue
            if s.order_key in seen or s.txn_key in seen:
                continue
            seen.update((s.order_key, s.txn_key))
            s.received = replace(s.received, verification=verification)
            out.append(s)
        return out
    return admit


def apply_batch(session: Session, batch: list[Entry[MockNotification]]) -> dict[int, NotifyResult]:
    """Apply what can be applied together, ending the caller's transaction if any is;
    their answers by position in `batch` (valid once the transaction commits)."""
    # two round trips: BEGIN with the secrets, locks and lookups; the writes with COMMIT
    plan_once(session)  # orders, items, payments and secrets by key
    pipeline = Pipeline(session)
    candidates = _candidates(session, batch)
    secrets = flows.queue_mock_secrets(pipeline, {s.tenant_id for s in candidates})
    return apply_successes(session, pipeline, candidates, batched=True, commit=True,
                           admit=_admit(batch, secrets))


_batchers: weakref.WeakKeyDictionary[Database, GroupCommit[MockNotification, NotifyResult]] = \
    weakref.WeakKeyDictionary()
_made = threading.Lock()


def _batcher(db: Database, max_size: int) -> GroupCommit[MockNotification, NotifyResult]:
    def alone(n: MockNotification) -> NotifyResult:
        return flows.notify_mock(db, n.slug, n.raw, n.headers)

    held = db.held()  # one batch at a time: back to back on one connection

    def together(batch: list[Entry[MockNotification]]) -> dict[int, NotifyResult]:
        with held.transaction() as session:
            return apply_batch(session, batch)

    return GroupCommit("notification", max_size, alone, together, db.writer_turn,
                       held.release, one_together=True)


async def notify_mock(db: Database, max_size: int, slug: str, raw: bytes,
                      headers: Any) -> NotifyResult:
    """`flows.notify_mock`, batched with concurrent notifications when `max_size` > 1."""
    if max_size <= 1:
        return await anyio.to_thread.run_sync(flows.notify_mock, db, slug, raw, headers)
    batcher = _batchers.get(db)
    if batcher is None:
        with _made:
            batcher = _batchers.setdefault(db, _batcher(db, max_size))
    return await batcher.submit_async(MockNotification(slug, raw, headers))
