"""`python -m xds` is `kafka-xds`."""

import sys

from xds.cli import main

sys.exit(main())
