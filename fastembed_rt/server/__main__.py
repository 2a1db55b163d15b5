"""``python -m fastembed_rt.server ARTIFACT [NAME=ARTIFACT ...]``: the same as ``fastembed-rt serve``."""

import sys

from fastembed_rt.server.main import main

sys.exit(main())
