"""``python -m gateway``: the ``placegate`` command line."""

import sys

from gateway.cli import main

sys.exit(main())
