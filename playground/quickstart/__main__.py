"""`python -m playground.quickstart`: the README's main job (see `playground.quickstart.cli`)."""

import sys

from playground.quickstart.cli import main

sys.exit(main())
