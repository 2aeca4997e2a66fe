"""The ``physadv`` command: one sub-command per job, collected from each package's ``cli.py``.

A package offers jobs by defining ``register(subparsers)`` in ``<package>/cli.py``. Errors the
user can fix (``PhysadvError``) print one line and exit with code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback

from physadv.core.errors import PhysadvError

# in the order `physadv --help` lists them
JOB_MODULES = ["physadv.physical.demo", "physadv.core.cli", "physadv.attacks.cli", "physadv.gans.cli", "physadv.rendering.cli", "physadv.rendering.signs.cli", "physadv.rendering.signs.detector_cli", "physadv.physical.design_cli",
               "physadv.printing.cli", "physadv.capture.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="physadv",
        description="Adversarial examples that leave the screen: design printable adversarial textures and "
                    "stickers, judge photos of them, run digital attacks and train GANs.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    for name in JOB_MODULES:
        try:
            if importlib.util.find_spec(name) is None:  # a package whose jobs are not written yet
                continue
        except ModuleNotFoundError:
            continue
        importlib.import_module(name).register(sub)  # importing rendering.signs.cli also registers the signs dataset
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except PhysadvError as exc:
        if debug:
            traceback.print_exc()
        print(f"physadv: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("physadv: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so, and how to see more
        if debug:
            traceback.print_exc()
        else:
            print(f"physadv: internal error: {exc.__class__.__name__}: {exc} (run with --debug for the traceback)",
                  file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
