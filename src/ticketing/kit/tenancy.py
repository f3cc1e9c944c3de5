"""The one place tenant filters are applied.

Repositories over tenant-owned tables derive from `TenantRepository` and build every
query through `select`, `update` or `delete`, which start from the tenant filter. A
row of another tenant is then indistinguishable from a row that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Delete, Select, Update, delete, select, update
from sqlalchemy.orm import Session


class TenantRepository:
    """Base of repositories whose every statement is scoped to one tenant."""

    def __init__(self, session: Session, tenant_id: int) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def select(self, model: Any, *columns: Any) -> Select[Any]:
        """SELECT model (or the given columns of it) WHERE tenant matches."""
        return select(*(columns or (model,))).where(model.tenant_id == self.tenant_id)

    def update(self, model: Any) -> Update:
        """UPDATE model WHERE tenant matches."""
        return update(model).where(model.tenant_id == self.tenant_id)

    def delete(self, model: Any) -> Delete:
        """DELETE FROM model WHERE tenant matches."""
        return delete(model).where(model.tenant_id == self.tenant_id)

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name
