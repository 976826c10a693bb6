import sys

from symflop.cli import main

sys.exit(main())
