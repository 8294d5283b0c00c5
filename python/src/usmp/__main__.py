"""``python3 -m usmp``: the same as the ``usmp`` command."""

from .cli import run

run()
