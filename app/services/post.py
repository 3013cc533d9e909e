"""The rules about posts. Each public method is one use case and owns its transaction (it
commits); it returns models (one, or a `Page` of them). Who may change a post is checked before
these run, by the route's `EditablePost` dependency (the author, or a superuser); a change by
anyone but the author is audited in the same transaction (app/services/audit_event.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.pagination import Page, PageParams, paginate
from app.db.rows import autocommit, insert_row, read_by_id
from app.errors import PostNotFound
from app.models.post import Post
from app.models.user import User
from app.schemas.post import PostCreateRequest, PostUpdateRequest
from app.services.audit_event import Actor, Changes, diff, record


class PostService:
    @staticmethod
    async def create_post(session: AsyncSession, author: User, data: PostCreateRequest) -> Post:
        await autocommit(session)  # the use case is the INSERT alone: one round trip
        post = await insert_row(session, Post, {**data.model_dump(), "author_id": author.id})
        await session.commit()
        return post

    @staticmethod
    async def list_posts(
        session: AsyncSession, page: PageParams, *, author_id: int | None = None
    ) -> Page[Post]:
        statement = Post.listed(author_id=author_id)
        return await paginate(session, statement, order=Post.list_order(), params=page)

    @staticmethod
    async def get_post(session: AsyncSession, post_id: int) -> Post:
        post = await read_by_id(session, Post, post_id)
        if post is None:
            raise PostNotFound()
        return post

    @staticmethod
    async def update_post(
        session: AsyncSession, actor: Actor, post: Post, data: PostUpdateRequest
    ) -> Post:
        changes = data.model_dump(exclude_unset=True)
        if changes:
            changed = diff(post, changes)
            record(session, actor, "post.update", "post", post.id, changed, owner_id=post.author_id)
            await post.update(session, **changes)
            await session.commit()
        return post

    @staticmethod
    async def delete_post(session: AsyncSession, actor: Actor, post: Post) -> None:
        gone: Changes = {"title": [post.title, None], "author_id": [post.author_id, None]}
        record(session, actor, "post.delete", "post", post.id, gone, owner_id=post.author_id)
        await post.delete(session)
        await session.commit()
