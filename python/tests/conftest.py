"""Lets `/usr/bin/python3 -m pytest python/tests` run from the repository root without installing."""

import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

# No example database: the suite must not leave a .hypothesis/ directory in the repository.
from hypothesis import settings  # noqa: E402

settings.register_profile("usmp", database=None)
settings.load_profile("usmp")


# --- a real PostgreSQL cluster for the registry and gateway tests ----------------------------------

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from pg_cluster import PostgresCluster, find_bindir  # noqa: E402


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One cluster for the whole session (initdb + start cost about 2 s); skipped if PostgreSQL is absent."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (tools/install-deps.sh installs postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (tools/install-deps.sh installs python3-psycopg)")
    with PostgresCluster(bindir) as cluster:
        yield cluster
