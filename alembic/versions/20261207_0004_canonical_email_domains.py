"""users.email: the domain in IDNA ASCII (punycode), the form every address now enters in

Addresses used to be stored with the domain as email-validator gave it back (`boss@аррӏе.com`)
from the API and the CLI, but as Supabase wrote it (`boss@xn--80ak6aa92e.com`) from a sign-in:
two accounts for one address. This rewrites each stored non-ASCII domain to its ASCII form. When
two rows would end with one address, none of them is changed, and their ids are reported (a
warning in the upgrade's output) for someone to decide: merging accounts is not a migration's
call. A stored domain with no ASCII form is reported and kept too.

Downgrade changes nothing: the ASCII form is the same address, and the Unicode spelling each row
had is not kept.

Revision ID: 0004_emails
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

import idna
import sqlalchemy as sa
from alembic import context, op

revision: str = "0004_emails"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")

users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String))

# Rows with a character beyond ASCII somewhere: only those can change (the rest were lower-cased
# when stored). UTF-8 writes such a character in more than one byte.
NOT_ASCII = {
    "postgresql": "octet_length(email) <> char_length(email)",
    "sqlite": "length(CAST(email AS BLOB)) <> length(email)",
}
BATCH = 500


def canonical_email(email: str) -> str:
    """`app.fields.canonical_email` as it was when this revision was written: copied, since a
    revision never imports app code (tests/test_migrations.py checks that they agree)."""
    local, at, domain = email.rpartition("@")
    if not at or not local:
        raise ValueError("not an email address")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"the domain has no IDNA ASCII form: {exc}") from None
    return f"{local.lower()}@{domain.lower()}"


def upgrade() -> None:
    if context.is_offline_mode():
        logger.warning("0004_emails rewrites rows: run it online (offline SQL skips it)")
        return
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(users.c.id, users.c.email).where(sa.text(NOT_ASCII[connection.dialect.name]))
    ).all()
    wanted: defaultdict[str, list[int]] = defaultdict(list)  # canonical address -> row ids
    for user_id, email in rows:
        try:
            canonical = canonical_email(email)
        except ValueError:
            logger.warning("user %s: its email's domain has no IDNA ASCII form; kept", user_id)
            continue
        if canonical != email:
            wanted[canonical].append(user_id)
    holders = dict(already_stored(connection, list(wanted)))
    for canonical, ids in wanted.items():
        if canonical in holders or len(ids) > 1:
            together = sorted([*ids, *([holders[canonical]] if canonical in holders else [])])
            logger.warning(
                "users %s have one email address once its domain is in IDNA ASCII: left as they "
                "are, merge or change them by hand (until then, lookups by email find only an "
                "address already in ASCII)",
                ", ".join(map(str, together)),
            )
            continue
        connection.execute(users.update().where(users.c.id == ids[0]).values(email=canonical))


def already_stored(connection: sa.Connection, emails: list[str]) -> Iterable[tuple[str, int]]:
    """(email, id) of the rows that hold one of `emails` already."""
    for start in range(0, len(emails), BATCH):
        batch = emails[start : start + BATCH]
        statement = sa.select(users.c.email, users.c.id).where(users.c.email.in_(batch))
        yield from connection.execute(statement).tuples()


def downgrade() -> None:
    pass
