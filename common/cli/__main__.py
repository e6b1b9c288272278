"""`python -m common.cli` runs the `dicomflow` console script."""

import sys

from common.cli.main import main

sys.exit(main())
