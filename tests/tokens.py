"""API tokens for tests that have no `User` object at hand (a row inserted with SQL, an id that
does not exist)."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.security import issue_token


@dataclass(frozen=True)
class Subject:
    id: int
    email: str
    security_stamp: str = "test-stamp"


def token_for(settings: Settings, user_id: int, email: str, stamp: str = "test-stamp") -> str:
    return issue_token(settings, Subject(user_id, email, stamp)).token
