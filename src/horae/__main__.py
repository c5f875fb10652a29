"""``python -m horae``: the horae command line (see :mod:`horae.cli`)."""

from __future__ import annotations

import sys

from horae.cli import main

if __name__ == "__main__":
    sys.exit(main())
