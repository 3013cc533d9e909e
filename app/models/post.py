from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Select, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, CRUDMixin, TimestampMixin
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
    def newest_first(cls, *, author_id: int | None = None) -> Select[tuple[Post]]:
        """Posts (of one author, when given), newest first: the order of the posts list."""
        statement = select(cls).order_by(cls.created_at.desc(), cls.id.desc())
        if author_id is not None:
            statement = statement.where(cls.author_id == author_id)
        return statement


# One index for each order the list serves: everyone's newest first, and one author's.
Index("ix_posts_newest", Post.created_at.desc(), Post.id.desc())
Index("ix_posts_author_newest", Post.author_id, Post.created_at.desc(), Post.id.desc())
