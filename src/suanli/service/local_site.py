"""The site ``suanli up`` serves itself: a seller tenant, its site, and a token for its
local agent.

The agent then registers the site's pools through the API like any other agent. Each
start issues a fresh token and revokes the account's earlier ones.

The site runs work on the exchange's own host, so by default it is *private* to the
operator's own tenant: the market places only that tenant's work there (other buyers see
the reason ``private``). ``suanli up --open-local-site`` opens it to every buyer — each
job still runs in the local backend's sandbox.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service.accounts import create_tenant, issue_token
from suanli.service.agents import create_site
from suanli.service.auth import Principal, Role
from suanli.service.events import record_event
from suanli.service.runtime import Runtime
from suanli.service.tables import Account, ApiToken, SiteRow, Tenant

__all__ = ["LOCAL_SITE_ID", "LOCAL_SITE_NAME", "LOCAL_SITE_TENANT", "prepare_local_site"]

LOCAL_SITE_TENANT = "local-site"
LOCAL_SITE_ID = "local"
LOCAL_SITE_NAME = "this machine (suanli up)"
_LABEL = "suanli up: local agent"


def prepare_local_site(rt: Runtime, city: str, *, open_to_all: bool) -> str:
    """Make the ``local`` site ready for the embedded agent and return a seller token of
    the ``local-site`` tenant (created on first use). The site is created in ``city`` if
    new, and made private to the operator's tenant unless ``open_to_all``."""
    now = rt.clock.now()

    def run(session: Session) -> str:
        tenant = session.scalars(select(Tenant).where(Tenant.name == LOCAL_SITE_TENANT)).first()
        if tenant is None:
            made_tenant, made = create_tenant(
                session, LOCAL_SITE_TENANT, [("agent", Role.SELLER)], now
            )
            account, tenant_id = made[0][0], made_tenant.id
        else:
            account = session.scalars(select(Account).where(Account.tenant_id == tenant.id)).one()
            tenant_id = tenant.id
        # The account serves only this agent: earlier starts' tokens are of no more use.
        for old in session.scalars(
            select(ApiToken).where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None))
        ):
            old.revoked_at = now
        seller = Principal(account.id, tenant_id, Role.SELLER, account.name, token_id="")
        site = session.get(SiteRow, LOCAL_SITE_ID, with_for_update=True)
        if site is None:
            site = create_site(
                session, LOCAL_SITE_ID, LOCAL_SITE_NAME, city, seller, now, rt.catalog
            )
        _set_private(session, site, None if open_to_all else _operator_tenant(session), now)
        return issue_token(session, account.id, now, _LABEL)[1]

    return rt.db.transact(run)


def _operator_tenant(session: Session) -> str | None:
    return session.scalars(
        select(Account.tenant_id).where(Account.role == Role.OPERATOR.value).order_by(Account.id)
    ).first()


def _set_private(session: Session, site: SiteRow, tenant_id: str | None, now: datetime) -> None:
    if site.private_tenant_id == tenant_id:
        return
    site.private_tenant_id = tenant_id
    record_event(
        session,
        at=now,
        subject_kind="site",
        subject_id=site.id,
        kind="private" if tenant_id else "opened",
        tenant_id=site.tenant_id,
        actor=None,
        reason=(
            f"takes work only from tenant {tenant_id} (suanli up)"
            if tenant_id
            else "open to every buyer (suanli up --open-local-site)"
        ),
    )
