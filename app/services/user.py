"""The rules about users: which fields need a superuser, duplicates, missing rows, when tokens are
revoked. Each public method is one use case and owns its transaction (it commits). Like every
service, it returns models (one, or a `Page` of them); the route's response schema serializes
them. Which record a caller may touch (itself, or any for a superuser) is checked before these
run, by the route's `owner_or_superuser` dependency, as for every resource. Every change takes
the `Actor` making it and is audited in the same transaction (app/services/audit_event.py); the API,
the admin site and the CLI all change users through here."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.pagination import Page, PageParams, paginate
from app.db.rows import autocommit, read_by_id, update_row
from app.errors import EmailAlreadyRegistered, NotFound, PermissionDenied, UserNotFound
from app.models.user import User, new_security_stamp
from app.schemas.user import UserCreateRequest, UserUpdateRequest
from app.services.audit_event import Actor, diff, record, record_user_update

# Fields only a superuser may change, on any record. The email is one of them: it is what links
# an account to a Supabase sign-in (a user who could set any address would be linked to, or
# block, the real owner of that address when they first sign in).
PRIVILEGED_FIELDS = frozenset({"email", "is_active", "is_superuser"})


class UserService:
    @staticmethod
    async def create_user(session: AsyncSession, actor: Actor, data: UserCreateRequest) -> User:
        if await User.get_by_email(session, data.email) is not None:
            raise EmailAlreadyRegistered()
        values = data.model_dump()
        try:
            user = await User.create(session, **values)
            created = {field: [None, value] for field, value in values.items() if value is not None}
            record(session, actor, "user.create", "user", user.id, created)
            await session.commit()
        except IntegrityError as exc:
            # Another request inserted the same email between our check and our insert.
            await session.rollback()
            raise EmailAlreadyRegistered() from exc
        return user

    @staticmethod
    async def list_users(session: AsyncSession, page: PageParams) -> Page[User]:
        return await paginate(session, User.listed(), order=User.list_order(), params=page)

    @staticmethod
    async def find_user(session: AsyncSession, user_id: int) -> User:
        user = await read_by_id(session, User, user_id)
        if user is None:
            raise UserNotFound()
        return user

    @staticmethod
    async def update_user(
        session: AsyncSession, actor: Actor, user: User, data: UserUpdateRequest
    ) -> User:
        changes = data.model_dump(exclude_unset=True)
        if not actor.is_superuser and PRIVILEGED_FIELDS & changes.keys():
            raise PermissionDenied(
                "Only a superuser can change email, is_active or is_superuser; "
                "your email comes from your Supabase sign-in"
            )
        for field in PRIVILEGED_FIELDS & changes.keys():
            if changes[field] is None:
                del changes[field]
        if not changes:
            return user
        email_changes = "email" in changes and changes["email"] != user.email
        changed = diff(user, changes)  # before the new stamp joins `changes`: never audited
        if email_changes or (changes.get("is_active") is False and user.is_active):
            # A token must not outlive the address or the access it was issued for; reactivating
            # later does not bring these tokens back.
            changes["security_stamp"] = new_security_stamp()
        if email_changes and await User.get_by_email(session, changes["email"]) is not None:
            raise EmailAlreadyRegistered()
        if changed and actor.id != user.id:
            # Audited: the event and the UPDATE in one transaction.
            record_user_update(session, actor, user, changed)
        elif not email_changes:
            await autocommit(session)  # the use case is the UPDATE alone: one round trip
        try:
            updated = await update_row(session, User, user.id, changes)
            if updated is None:  # deleted meanwhile: answered as a row vanished under any request
                raise NotFound()
            await session.commit()
        except IntegrityError as exc:
            # Another request took the address between our check and our update.
            await session.rollback()
            raise EmailAlreadyRegistered() from exc
        return updated

    @staticmethod
    async def delete_user(session: AsyncSession, actor: Actor, user: User) -> None:
        """Delete the user and, by the database's cascade, everything they own. The event keeps
        the address the account had (its id alone would name nothing any more)."""
        session.add(user)
        gone = {"email": [user.email, None]}
        record(session, actor, "user.delete", "user", user.id, gone, owner_id=user.id)
        await user.delete(session)
        await session.commit()

    @staticmethod
    async def revoke_tokens(session: AsyncSession, actor: Actor, user: User) -> None:
        """Every API token of `user` issued so far stops working ("sign out everywhere")."""
        session.add(user)
        user.revoke_tokens()
        record(session, actor, "user.revoke_tokens", "user", user.id, owner_id=user.id)
        await session.commit()
