"""``python -m vsdpo.train [--config FILE] [--KEY VALUE ...]``."""

import sys

from vsdpo.train.cli import main

sys.exit(main())
