"""`trtdeploy` command line. Each subcommand lives in its own module with
`add_parser(subparsers)` and `run(args) -> int`; heavy imports happen inside `run`,
so `--help` works on a machine with neither TensorFlow nor TensorRT. Options several
commands share come from `args`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import DeployError
from ..runners.tf import quiet_tensorflow_startup

# Subcommand name -> module under deploy.cli (kept in pipeline order for --help).
COMMANDS = {
    "export": "export",
    "calibrate": "calibrate",
    "fp16": "fp16",
    "build": "build",
    "infer": "infer",
    "profile": "profile",
    "bench": "bench",
    "parity": "parity",
    "triton": "triton",
    "deepstream": "deepstream",
    "demo": "demo",
    "doctor": "doctor",
}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the form of every other error: one `error:` line, exit 2
    (the usage is a `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="trtdeploy",
        description="TF-slim style ResNet v2 -> ONNX -> FP16/INT8 -> TensorRT, with parity reports.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and TensorFlow's own start-up messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS.values():
        importlib.import_module(f"{__name__}.{mod}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .. import interrupts

    with interrupts.handled():
        try:
            return _main(argv)
        except KeyboardInterrupt as e:  # also one that arrived while parsing or starting up
            print(f"error: {'terminated' if isinstance(e, interrupts.Terminated) else 'interrupted'}",
                  file=sys.stderr)
            return interrupts.exit_status(e)


def _main(argv: list[str] | None) -> int:
    from .. import interrupts

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:  # -v keeps TensorFlow's own start-up logging
        quiet_tensorflow_startup()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s" if not args.verbose else "%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for noisy in ("tf2onnx", "absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.command:
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        interrupts.raise_if_interrupted()  # a Ctrl-C swallowed on the way still ends the command
        return status
    except DeployError as e:
        for line in e.messages:
            print(f"error: {line}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # An OS error no stage turned into a DeployError (a full disk, a read-only file system, ...):
        # still one line, with the path.
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
