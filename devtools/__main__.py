"""`python -m devtools demo | samples DIR | azurite start | azurite stop | queue | listen PORT`
(see README)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from azure.core.exceptions import AzureError

from shared.core.settings import Settings

from . import alerts, azurite, demo, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="ingest the sample logs into a private Azurite and print them")
    wr = sub.add_parser("samples", help="write the sample logs, in their blob layout, to a folder")
    wr.add_argument("folder", type=Path)
    az = sub.add_parser(
        "azurite", help="a local Azurite on 127.0.0.1:10000-10002 (data: .azurite/)"
    )
    az.add_argument("action", choices=("start", "stop"))
    sub.add_parser("queue", help="print the alert queue's messages (the app's settings)")
    ls = sub.add_parser("listen", help="a webhook on 127.0.0.1:PORT that prints what it gets")
    ls.add_argument("port", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return demo.run(sys.stdout)
        if args.command == "queue":
            return alerts.show_queue(Settings.from_env(os.environ), sys.stdout)
        if args.command == "listen":
            alerts.listen(args.port, sys.stdout)
            return 0
        if args.command == "samples":
            written = samples.write(args.folder)
            print(f"wrote {written} sample log blob(s) under {args.folder}/")
            return 0
        if args.action == "start":
            print(azurite.start_background())
        else:
            print(azurite.stop_background())
        return 0
    except (RuntimeError, OSError, ValueError, AzureError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
