"""``python -m physadv.gans ACTION ...`` == ``physadv gan ACTION ...`` (handy under ``torchrun -m physadv.gans train ...``)."""
import argparse
import sys

from physadv.core.errors import PhysadvError
from physadv.gans.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m physadv.gans")
    register(parser.add_subparsers(dest="job", required=True))
    args = parser.parse_args(["gan", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except PhysadvError as exc:
        print(f"gans: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
