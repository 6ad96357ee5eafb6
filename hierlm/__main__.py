"""``python -m hierlm``: the command line (see :mod:`hierlm.cli`)."""

import sys

from hierlm.cli import main

if __name__ == "__main__":
    sys.exit(main())
