"""``python -m smallfirst.cli``."""

import sys

from smallfirst.cli import main

sys.exit(main())
