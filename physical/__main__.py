"""`python -m physical` is the `physadv` command."""
import sys

from physical.cli import main

sys.exit(main())
