"""``python -m fastembed_rt ...``: the same as ``fastembed-rt ...``."""

import sys

from fastembed_rt.cli import main

sys.exit(main())
