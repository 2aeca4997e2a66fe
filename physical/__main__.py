"""`python -m physadv.physical` is the `physadv` command."""
import sys

from physadv.physical.cli import main

sys.exit(main())
