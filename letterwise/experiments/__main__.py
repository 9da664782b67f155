"""`python -m letterwise.experiments`: the command line of letterwise.experiments.cli."""

import sys

from letterwise.experiments.cli import main

sys.exit(main())
