"""`python -m llava.model.convert --help` lists the subcommands."""

import sys

from llava.model.convert.cli import main

sys.exit(main())
