from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.db.pagination import Page
from app.dependencies import (
    CurrentUser,
    PageParamsDep,
    ReadSessionDep,
    SessionDep,
    owner_or_superuser,
)
from app.fields import MAX_INT_ID
from app.models.post import Post
from app.schemas.errors import BODY_ERRORS, responses
from app.schemas.post import PostCreateRequest, PostPage, PostResponse, PostUpdateRequest
from app.services.audit_event import Actor
from app.services.post import PostService

router = APIRouter(prefix="/posts", tags=["posts"], responses=responses(401, 503))

PostId = Annotated[int, Path(ge=1, le=MAX_INT_ID, description="The post's id")]


async def post_for_change(post_id: PostId, session: SessionDep) -> Post:
    """The post of the path, in the request's session (404 when missing)."""
    return await PostService.get_post(session, post_id)


# The post of the path, when the caller is its author or a superuser (403 otherwise).
EditablePost = Annotated[Post, Depends(owner_or_superuser(post_for_change))]


@router.post(
    "/",
    response_model=PostResponse,
    status_code=status.HTTP_201_CREATED,
    responses=responses(*BODY_ERRORS),
)
async def create_post(data: PostCreateRequest, session: SessionDep, author: CurrentUser) -> Post:
    """Write a post; its author is the caller."""
    return await PostService.create_post(session, author, data)


@router.get("/", response_model=PostPage)
async def list_posts(
    session: ReadSessionDep,
    _: CurrentUser,
    page: PageParamsDep,
    author_id: Annotated[
        int | None, Query(ge=1, le=MAX_INT_ID, description="Only this author's posts")
    ] = None,
) -> Page[Post]:
    """List posts, newest first."""
    return await PostService.list_posts(session, page, author_id=author_id)


@router.get("/{post_id}", response_model=PostResponse, responses=responses(404))
async def read_post(post_id: PostId, session: ReadSessionDep, _: CurrentUser) -> Post:
    """A post."""
    return await PostService.get_post(session, post_id)


@router.patch(
    "/{post_id}", response_model=PostResponse, responses=responses(*BODY_ERRORS, 403, 404)
)
async def update_post(
    data: PostUpdateRequest, post: EditablePost, session: SessionDep, caller: CurrentUser
) -> Post:
    """Change a post (its author, or a superuser)."""
    return await PostService.update_post(session, Actor.of(caller), post, data)


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404))
async def delete_post(post: EditablePost, session: SessionDep, caller: CurrentUser) -> Response:
    """Delete a post (its author, or a superuser)."""
    await PostService.delete_post(session, Actor.of(caller), post)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
