"""`f2b-study` command line. Each command lives in `f2b_study/commands/<name>.py` and exposes
`register(subparsers)`; heavy imports happen inside the command so `--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import signal
import sys
import threading
from typing import Any

from f2b_study import __version__
from f2b_study.errors import InputError

# Pipeline order: this is also the order `f2b-study --help` lists them in.
COMMANDS = ("label", "preprocess", "table1", "models", "train", "screen", "evaluate", "explain", "study",
            "site-summary", "pool", "demo")

EPILOG = """examples:
  f2b-study demo                                   # the whole chain on the bundled demo cohort
  f2b-study label cohorts/demo.toml --out reports/demo/labelled.csv
  f2b-study table1 reports/demo/labelled.csv --by bone_status
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="f2b-study",
        description="Osteoporosis risk screening from face photos (Face2Bone) and its STARD study analysis. "
        "Research use only.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"f2b-study {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = f"f2b_study.commands.{name.replace('-', '_')}"  # site-summary lives in site_summary.py
        if importlib.util.find_spec(module) is None:
            continue
        importlib.import_module(module).register(sub)
    return parser


def show_warnings_once(command: str) -> None:
    """Python warnings as one plain line each, each distinct message once per run (not file:line plus source)."""
    import warnings

    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"f2b-study {command}: warning: {text}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    show_warnings_once(args.command)
    previous = _sigterm_as_interrupt()
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        print(f"f2b-study {args.command}: error: {error}", file=sys.stderr)
        return InputError.exit_code
    except KeyboardInterrupt:
        print(f"f2b-study {args.command}: interrupted; finished work is kept, rerun to continue", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (what `timeout`, Slurm and Kubernetes send) becomes the same clean interrupt as Ctrl-C: pools are
    stopped, locks released, exit 130. A second SIGTERM while that cleanup runs ends the process at once. Returns the
    previous handler (None when not in the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
