"""``python -m hierlm``: the command line (see :mod:`hierlm.cli`)."""

import sys

from hierlm.cli import main

sys.exit(main())
