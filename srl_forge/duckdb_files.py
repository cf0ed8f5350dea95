"""DuckDB files of the embedded profile: one short-lived connection per operation, so that several
processes (the webserver, the daemon, runs) can take turns on the same file."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


@contextmanager
def connect(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(path))
    try:
        yield con
    finally:
        con.close()
