"""`python -m bench [--quick] [--only NAME ...]` from the repository root."""

import sys

from bench.run import main

sys.exit(main())
