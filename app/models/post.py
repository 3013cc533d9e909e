from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Select, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, CRUDMixin, TimestampMixin
from app.db.pagination import Order
from app.fields import TITLE_MAX_LENGTH


class Post(CRUDMixin, TimestampMixin, Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    body: Mapped[str] = mapped_column(Text, default="")
    # Deleting a user deletes their posts (in the database, so no row is ever left behind).
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    def __repr__(self) -> str:
        return f"<Post id={self.id!r}>"

    @property
    def owner_id(self) -> int:
        """Who may change or delete it (with superusers): see `app/dependencies.py`."""
        return self.author_id

    @classmethod
    def listed(cls, *, author_id: int | None = None) -> Select[tuple[Post]]:
        """The posts a list shows: all, or one author's (`paginate` orders and pages them)."""
        statement = select(cls)
        if author_id is not None:
            statement = statement.where(cls.author_id == author_id)
        return statement

    @classmethod
    def list_order(cls) -> Order:
        """The order of the posts list: newest first, then by id (the last term: the key)."""
        return (cls.created_at.desc(), cls.id.desc())


# One index for each list `listed` gives, in `list_order`: everyone's, and one author's.
Index("ix_posts_newest", Post.created_at.desc(), Post.id.desc())
Index("ix_posts_author_newest", Post.author_id, Post.created_at.desc(), Post.id.desc())
