"""The site ``suanli up`` serves itself: a seller tenant and a token for its local agent.

The agent then registers the site and its pools through the API like any other agent.
Each start issues a fresh token and revokes the account's earlier ones.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service.accounts import create_tenant, issue_token
from suanli.service.auth import Role
from suanli.service.runtime import Runtime
from suanli.service.tables import Account, ApiToken, Tenant

__all__ = ["LOCAL_SITE_TENANT", "local_agent_token"]

LOCAL_SITE_TENANT = "local-site"
_LABEL = "suanli up: local agent"


def local_agent_token(rt: Runtime) -> str:
    """A seller token of the ``local-site`` tenant (created on first use)."""
    now = rt.clock.now()

    def run(session: Session) -> str:
        tenant = session.scalars(select(Tenant).where(Tenant.name == LOCAL_SITE_TENANT)).first()
        if tenant is None:
            _, made = create_tenant(session, LOCAL_SITE_TENANT, [("agent", Role.SELLER)], now)
            account_id = made[0][0].id
        else:
            account_id = session.scalars(
                select(Account.id).where(Account.tenant_id == tenant.id)
            ).one()
        # The account serves only this agent: earlier starts' tokens are of no more use.
        for old in session.scalars(
            select(ApiToken).where(ApiToken.account_id == account_id, ApiToken.revoked_at.is_(None))
        ):
            old.revoked_at = now
        return issue_token(session, account_id, now, _LABEL)[1]

    return rt.db.transact(run)
