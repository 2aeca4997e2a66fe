"""``python -m physadv.printing export|chart|calibrate ...``: the same jobs as ``physadv print ...``."""
import argparse
import sys

from physadv.core.errors import PhysadvError
from physadv.printing.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m physadv.printing")
    register(parser.add_subparsers(dest="job", required=True))
    args = parser.parse_args(["print", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except PhysadvError as exc:
        print(f"physadv: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
