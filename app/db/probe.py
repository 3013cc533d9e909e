"""One connection at start-up, to tell a database that is not there *yet* from one that will
never work with these settings (`manage.py run`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from app.config import Settings
from app.db.engine import create_engine
from app.db.errors import DatabaseProblem, diagnose, is_database_error


async def probe_database(settings: Settings) -> DatabaseProblem | None:
    """Connect and run `SELECT 1`: None when that works, else what is wrong."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite":
        return _sqlite_problem(url.database)
    engine = create_engine(settings, pooled=False)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        if not is_database_error(exc):
            raise
        return diagnose(exc)
    finally:
        await engine.dispose()
    return None


def _sqlite_problem(database: str | None) -> DatabaseProblem | None:
    """Opening the file would create it; only check that it can be created or opened."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    directory = Path(database).parent
    if not directory.is_dir():
        return DatabaseProblem(
            f"the directory {directory} of the SQLite database does not exist",
            "create it, or fix the path in DATABASE_URL",
            lasting=True,
        )
    return None
