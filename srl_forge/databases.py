"""Where the platform's tables live: a DuckDB file (embedded default) or PostgreSQL (production),
chosen by the location string alone, so switching is configuration.

Stores write their SQL once with `?` placeholders; `Database.sql` turns them into psycopg2's `%s`.
Each operation is one short transaction on its own connection: on DuckDB that lets the webserver,
the daemon, runs and the model server take turns on one file (a lock held by another process is
waited out); on PostgreSQL it keeps no idle connection open between calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

POSTGRES_PREFIXES = ("postgresql://", "postgresql+psycopg2://", "postgres://")


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(POSTGRES_PREFIXES)


def redact(location: str) -> str:
    """A location fit for messages and logs: a URL's user and password are left out."""
    if is_postgres(location):
        scheme, rest = location.split("://", 1)
        return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
    return location


@dataclass(frozen=True)
class Database:
    location: str
    dialect: Literal["duckdb", "postgresql"]

    @property
    def label(self) -> str:
        return redact(self.location)

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s") if self.dialect == "postgresql" else text

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor (`execute`, `executemany`, `fetchone`, `fetchall`); commits on success."""
        factory = _duckdb_transaction if self.dialect == "duckdb" else _postgres_transaction
        with factory(self.location) as cursor:
            yield cursor


def open_database(location: str | Path) -> Database:
    text = str(location)
    if is_postgres(text):
        return Database(text.replace("postgresql+psycopg2://", "postgresql://", 1), "postgresql")
    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return Database(text, "duckdb")


def _open_duckdb(path: str):
    import duckdb
    from tenacity import (
        retry,
        retry_if_exception,
        stop_after_delay,
        wait_random_exponential,
    )

    @retry(
        retry=retry_if_exception(lambda e: isinstance(e, duckdb.IOException) and "lock" in str(e).lower()),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        stop=stop_after_delay(30),
        reraise=True,
    )
    def connect():
        return duckdb.connect(path)

    return connect()


@contextmanager
def _duckdb_transaction(path: str) -> Iterator[Any]:
    con = _open_duckdb(path)
    try:
        con.execute("BEGIN")
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()


@contextmanager
def _postgres_transaction(dsn: str) -> Iterator[Any]:
    import psycopg2

    con = psycopg2.connect(dsn)
    try:
        with con:  # commits on success, rolls back on error
            with con.cursor() as cur:
                yield cur
    finally:
        con.close()
