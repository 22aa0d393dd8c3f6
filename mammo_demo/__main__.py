"""``python -m mammo_demo``: the same as the ``mammo-demo`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
