"""`python -m pcseg ...` runs the pcseg command line."""

import sys

from pcseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
