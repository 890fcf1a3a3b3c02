"""`python -m extproc` runs the command line."""

import sys

from extproc.cli import main

sys.exit(main())
