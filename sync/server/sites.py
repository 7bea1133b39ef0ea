"""Communities (sites) and the street offices they report to.

A site is known once it is in the `sites` table (`checkpoint registry site
add`), has an enrolled gate, or holds registry entries. Only sites in the
table can belong to a street office, so a street officer sees exactly the
communities registered under its office.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from sync.server import audit
from sync.server.db import Database
from sync.server.schema import gates, registry_state, sites

GLOBAL_SITE = "*"


class SiteError(ValueError):
    """A site that cannot be added as asked."""


def add_site(db: Database, site_id: str, *, name: str = "", street_office: str | None = None, by: str) -> dict:
    """Add or update a site's name and street office (audited)."""
    if not site_id or site_id == GLOBAL_SITE or len(site_id) > 64:
        raise SiteError(f"site id {site_id!r}: expected 1-64 characters, not '*'")
    after = {"name": name, "street_office": street_office}
    with db.write() as conn:
        row = conn.execute(select(sites).where(sites.c.site_id == site_id)).first()
        before = {"name": row.name, "street_office": row.street_office} if row else None
        if row:
            conn.execute(sites.update().where(sites.c.site_id == site_id).values(**after))
        else:
            conn.execute(sites.insert().values(site_id=site_id, created_at=datetime.now(timezone.utc), **after))
        audit.record(conn, actor=by, action="site.upsert", site_id=site_id, entity="site", entity_id=site_id,
                     before=before, after=after)
    return {"site_id": site_id, **after}


def known_sites(db: Database) -> list[str]:
    """Every site id the server knows of, sorted (never "*")."""
    with db.read() as conn:
        found = {r[0] for r in conn.execute(select(sites.c.site_id))}
        found |= {r[0] for r in conn.execute(select(gates.c.site_id).distinct())}
        found |= {r[0] for r in conn.execute(select(registry_state.c.site_id).distinct())}
    found.discard(GLOBAL_SITE)
    return sorted(found)


def is_known(db: Database, site_id: str) -> bool:
    return site_id in known_sites(db)


def site_rows(db: Database) -> dict[str, dict]:
    """site id -> {name, street_office} for the sites in the table."""
    with db.read() as conn:
        return {r.site_id: {"name": r.name, "street_office": r.street_office} for r in conn.execute(select(sites))}


def sites_of_office(db: Database, street_office: str) -> list[str]:
    with db.read() as conn:
        return sorted(r[0] for r in conn.execute(
            select(sites.c.site_id).where(sites.c.street_office == street_office)))


def offices(db: Database) -> list[str]:
    with db.read() as conn:
        return sorted(r[0] for r in conn.execute(
            select(sites.c.street_office).where(sites.c.street_office.is_not(None)).distinct()))
