"""Options several subcommands share, defined once so they read and behave alike.

- `BUNDLE` (positional), `--data PATH` (input data: every source deploy.data.inputs reads),
  `--batch-size B` (inputs per call), `--num-images N` / `--seed S` (a seeded subset),
  `--skip-bad`, `--keep-fp32 NODE...` (ONNX nodes kept in high precision).
- Renamed options stay accepted for one release as hidden aliases that say their new
  name on stderr: build's `--calib-data` (now `--data`), calibrate's `--exclude` (now
  `--keep-fp32`), the calibration benchmark's `--batch` (now `--batch-size`).

Standard library only: every parser is built on start-up, `--help` included.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # building the parser imports no bundle code
    from ..bundle import Bundle

BUNDLE_HELP = "bundle directory written by `trtdeploy export`"
DATA_HELP = ("an image folder (JPEG/PNG, searched recursively; class subfolders DIR/<class>/ give labels), "
             "a .txt list of image paths (one per line, relative to the list or absolute, optionally followed "
             "by an integer label), or a .npy/.npz array of preprocessed inputs")


def _number(convert, low: float, strict: bool, what: str):
    """An argparse type: a finite number >= low (> low when `strict`); argparse says what was wrong."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"{what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, 0, True, "must be an integer >= 1")
non_negative_int = _number(int, 0, False, "must be an integer >= 0")
positive_float = _number(float, 0.0, True, "must be a finite number > 0")
non_negative_float = _number(float, 0.0, False, "must be a finite number >= 0")


class _RenamedOption(argparse.Action):
    """An old option name: stores into the new option's dest and says the new name on stderr."""

    def __init__(self, option_strings, dest, new_name: str, **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is now {self.new_name}; the old name goes in the next release",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(p: argparse.ArgumentParser, old: str, new: str, **kwargs) -> None:
    p.add_argument(old, action=_RenamedOption, new_name=new, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                   **kwargs)


def add_bundle(p: argparse.ArgumentParser) -> None:
    """BUNDLE, and `--verify`: how thoroughly its files are checked against the manifest."""
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help=BUNDLE_HELP)
    p.add_argument("--verify", action="store_true",
                   help="hash every bundle file read against the manifest (default: hash a file only when its "
                        "size or modification time differs from the recorded one)")


@contextlib.contextmanager
def held_bundle(args: argparse.Namespace, command: str, write: bool) -> Iterator[Bundle]:
    """The bundle of `args`, held for the command: exclusively by a command that writes into it
    (a second one waits), shared by one that only reads it (no update commits meanwhile)."""
    from ..bundle import open_bundle

    bundle = open_bundle(args.bundle, verify=args.verify)
    with (bundle.update(command) if write else bundle.reading(command)):
        yield bundle


def inside(path: Path | None, root: Path) -> bool:
    """Whether an output path lands in the bundle at `root` (None: the command's default, which does)."""
    return path is None or Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))


def add_data(p: argparse.ArgumentParser, purpose: str, required: bool = False, old_name: str | None = None) -> None:
    """`--data PATH`; `purpose` says what the command does with it (the sources follow)."""
    p.add_argument("--data", type=Path, required=required, metavar="PATH", help=f"{purpose}: {DATA_HELP}")
    if old_name:
        add_renamed(p, old_name, "--data", dest="data", type=Path, metavar="PATH")


def add_batch_size(p: argparse.ArgumentParser, default: int, what: str) -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, metavar="B",
                   help=f"{what} (default: %(default)s)")


def add_subset(p: argparse.ArgumentParser, num_help: str) -> None:
    """`--num-images N` and the `--seed` that picks them."""
    p.add_argument("--num-images", type=positive_int, metavar="N", help=num_help)
    p.add_argument("--seed", type=int, default=0, help="seed of the --num-images subset (default: %(default)s)")


def add_skip_bad(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--skip-bad", action="store_true", help=what)


def add_keep_fp32(p: argparse.ArgumentParser, what: str, old_name: str | None = None) -> None:
    """`--keep-fp32 NODE...`: ONNX node names kept in high precision."""
    p.add_argument("--keep-fp32", nargs="+", default=[], metavar="NODE", help=what)
    if old_name:
        add_renamed(p, old_name, "--keep-fp32", dest="keep_fp32", nargs="+", metavar="NODE")


def add_engine_and_batch(p: argparse.ArgumentParser) -> None:
    """`--engine PLAN` and `--batch N` of the commands that run one engine on random inputs."""
    p.add_argument("--engine", type=Path, metavar="PLAN", help="the engine (default: the bundle's only engine)")
    p.add_argument("--batch", type=positive_int, metavar="N", help="batch size (default: the engine's opt batch)")


def add_out(p: argparse.ArgumentParser, metavar: str, what: str, required: bool = False) -> None:
    """`--out`: each command says what it writes there (a directory, a plan file, ...)."""
    p.add_argument("--out", type=Path, required=required, metavar=metavar, help=what)
