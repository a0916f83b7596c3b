"""``python -m hotpool.benchmarks.chaos``."""

import sys

from hotpool.benchmarks.chaos.run import main

sys.exit(main())
