"""The rules about users: which fields need a superuser, duplicates, missing rows, when tokens are
revoked. Each public method is one use case and owns its transaction (it commits). Like every
service, it returns models (one, or a `Page` of them); the route's response schema serializes
them. Which record a caller may touch (itself, or any for a superuser) is checked before these
run, by the route's `owner_or_superuser` dependency, as for every resource."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.pagination import Page, PageParams, paginate
from app.db.rows import autocommit, read_by_id, update_row
from app.errors import EmailAlreadyRegistered, NotFound, PermissionDenied, UserNotFound
from app.models.user import User, new_security_stamp
from app.schemas.user import UserCreateRequest, UserUpdateRequest

# Fields only a superuser may change, on any record. The email is one of them: it is what links
# an account to a Supabase sign-in (a user who could set any address would be linked to, or
# block, the real owner of that address when they first sign in).
PRIVILEGED_FIELDS = frozenset({"email", "is_active", "is_superuser"})


class UserService:
    @staticmethod
    async def create_user(session: AsyncSession, data: UserCreateRequest) -> User:
        if await User.get_by_email(session, data.email) is not None:
            raise EmailAlreadyRegistered()
        try:
            user = await User.create(session, **data.model_dump())
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
        session: AsyncSession, actor: User, user: User, data: UserUpdateRequest
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
        if email_changes or (changes.get("is_active") is False and user.is_active):
            # A token must not outlive the address or the access it was issued for; reactivating
            # later does not bring these tokens back.
            changes["security_stamp"] = new_security_stamp()
        if not email_changes:
            await autocommit(session)  # the use case is the UPDATE alone: one round trip
        elif await User.get_by_email(session, changes["email"]) is not None:
            raise EmailAlreadyRegistered()
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
    async def delete_user(session: AsyncSession, user: User) -> None:
        session.add(user)
        await user.delete(session)
        await session.commit()

    @staticmethod
    async def revoke_tokens(session: AsyncSession, user: User) -> None:
        """Every API token of `user` issued so far stops working ("sign out everywhere")."""
        session.add(user)
        user.revoke_tokens()
        await session.commit()
