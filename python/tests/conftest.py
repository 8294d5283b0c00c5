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
