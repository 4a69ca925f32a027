"""`python -m aegis_actors`."""

import sys

from aegis_actors.cli import main

sys.exit(main())
