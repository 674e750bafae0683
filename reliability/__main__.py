"""`python -m reliability` runs the soak (see reliability/soak.py)."""

import sys

from reliability.soak import main

sys.exit(main())
