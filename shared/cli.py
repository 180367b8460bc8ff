"""Command line: `python -m shared COMMAND` (see README)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="ingest sample logs into a private Azurite and print the result")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo

        return demo.run(sys.stdout)
    return 2
