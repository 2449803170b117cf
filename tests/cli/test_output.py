"""What a user sees from the CLI: each line once, no progress-bar escape codes in logs,
--version, help text on every option."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import progress as progress_module
from deploy.progress import progress

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str) -> subprocess.CompletedProcess:
    """`trtdeploy ARGV` as a user runs it: stdout and stderr together, as a terminal or log shows them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "deploy", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def digits_with_a_bad_image(tmp_path_factory) -> Path:
    pytest.importorskip("PIL")
    from deploy.digits import write_image_folder

    folder = write_image_folder(tmp_path_factory.mktemp("data") / "heldout", "test")
    (folder / "3" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


def test_fp16_and_calibrate_say_each_thing_once_without_escape_codes(default_bundle_dir, digits_with_a_bad_image):
    fp16 = cli("fp16", str(default_bundle_dir))
    assert fp16.returncode == 0, fp16.stdout
    assert fp16.stdout.count("wrote ") == 1, fp16.stdout

    calib = cli("calibrate", str(default_bundle_dir), "--data", str(digits_with_a_bad_image), "--skip-bad",
                "--num-images", "1000", "--recalibrate")
    out = calib.stdout
    assert calib.returncode == 0, out
    for line in ("skipping 1 unreadable image(s)", "asked for 1000 inputs", "holds 361",
                 "labels from 10 class folders"):
        assert out.count(line) == 1, f"{line!r} {out.count(line)} times in:\n{out}"
    assert "top-1 on the calibration images (360)" in out  # the accuracy pass ran, on the same images
    assert "\r" not in out and "\x1b" not in out, "a progress bar wrote into a non-terminal"
    assert out.count("calibration statistics: 23/23 batch") == 1, out  # plain progress lines, once


# --- progress -------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch, caplog):
    pytest.importorskip("tqdm")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress(range(5), "work", total=5)) == list(range(5))
    assert "\r" in terminal.getvalue() and "work" in terminal.getvalue()  # tqdm drew its bar

    log_file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log_file)
    with caplog.at_level(logging.INFO, logger="trtdeploy"):
        assert list(progress(range(5), "work", total=5, unit="img")) == list(range(5))
    assert log_file.getvalue() == ""
    assert caplog.messages[-1].startswith("work: 5/5 img in ")


def test_plain_progress_is_periodic(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    t = [0.0]

    def clock():
        return t[0]

    def slow(n):
        for i in range(n):
            t[0] += 4.0  # each item takes 4 s: a line about every 10 s
            yield i

    with caplog.at_level(logging.INFO, logger="trtdeploy"):
        list(progress(slow(10), "stats", total=10, unit="batch", clock=clock))
    assert caplog.messages == ["stats: 3/10 batch", "stats: 6/10 batch", "stats: 9/10 batch",
                               "stats: 10/10 batch in 40.0 s"]
    assert progress_module.LOG_INTERVAL_S == 10.0


# --- --version and help ---------------------------------------------------------------------


def test_version(capsys):
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    from deploy import __version__
    from deploy.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"trtdeploy {__version__}"
    # The package's own version is the one pip installs.
    assert __version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_through_the_console():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("trtdeploy 0.")


def _parsers(parser, path=()):
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def _benchmark_parser():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_parser()


def test_every_option_of_every_command_has_help():
    """...except the old names of renamed options, hidden on purpose: each stores into an option
    that has help."""
    import argparse

    from deploy.cli import build_parser
    from deploy.cli.args import _RenamedOption

    missing = []
    for prog, parser in (("trtdeploy", build_parser()), ("benchmark.py", _benchmark_parser())):
        for path, p in _parsers(parser):
            helped = {a.dest for a in p._actions if (a.help or "").strip() and a.help != argparse.SUPPRESS}
            for action in p._actions:
                if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                    continue
                if isinstance(action, _RenamedOption) and action.dest in helped:
                    continue
                if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                    missing.append(" ".join((prog, *path, action.option_strings[0] if action.option_strings
                                             else action.dest)))
    assert not missing, f"no help text: {missing}"


@pytest.mark.parametrize("command", ["calibrate", "parity", "build"])
def test_data_help_names_every_source_calibration_datasets_reads(command, capsys):
    from deploy.cli import main
    from deploy.cli.args import DATA_HELP

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert DATA_HELP in text
    for source in ("image folder", ".txt list of image paths", ".npy/.npz"):
        assert source in DATA_HELP


# --- shared conventions ---------------------------------------------------------------------


def _options(command: str) -> dict[str, object]:
    """Option string -> action of one subcommand's parser."""
    from deploy.cli import build_parser

    (sub,) = (a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return {s: a for a in sub.choices[command]._actions for s in a.option_strings}


def test_shared_options_read_alike_everywhere():
    """--data, --batch-size, --num-images/--seed, --skip-bad, --keep-fp32 come from deploy.cli.args:
    same metavar and type wherever a command has them; --out says per command what it is."""
    for option, commands in {"--data": ("calibrate", "parity", "build"), "--batch-size": ("calibrate", "parity"),
                             "--num-images": ("calibrate", "parity"), "--seed": ("calibrate", "parity"),
                             "--skip-bad": ("calibrate", "parity"), "--keep-fp32": ("calibrate", "fp16")}.items():
        actions = [_options(c)[option] for c in commands]
        assert len({(a.metavar, a.type, a.nargs, a.dest) for a in actions}) == 1, option
    outs = {c: _options(c)["--out"].metavar for c in ("export", "build", "parity", "demo")}
    assert outs == {"export": "BUNDLE", "build": "FILE.plan", "parity": "DIR", "demo": "DIR"}
    for c in ("calibrate", "fp16", "build", "infer", "parity"):
        assert "--calib-data" not in _options(c) or c == "build"
        assert "--exclude" not in _options(c) or c == "calibrate"


@pytest.mark.parametrize("argv, dest, old, new", [
    (["build", "B", "--precision", "int8", "--calib-data", "imgs"], "data", "--calib-data", "--data"),
    (["calibrate", "B", "--data", "d", "--exclude", "n1", "n2"], "keep_fp32", "--exclude", "--keep-fp32"),
])
def test_old_option_names_still_work_and_say_the_new_one(argv, dest, old, new, capsys):
    from deploy.cli import build_parser

    parser = build_parser()
    assert getattr(parser.parse_args(argv), dest) in (Path("imgs"), ["n1", "n2"])
    assert capsys.readouterr().err == f"warning: {old} is now {new}; the old name goes in the next release\n"
    # Without either name, the new option's default; and the old name is not in --help.
    assert getattr(parser.parse_args(argv[:argv.index(old)]), dest) in (None, [])
    with pytest.raises(SystemExit):
        parser.parse_args([argv[0], "--help"])
    assert old not in capsys.readouterr().out


def test_a_missing_subcommand_module_is_an_error(monkeypatch):
    """A command whose module is missing (a broken install) is not dropped from the CLI silently."""
    import deploy.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "nosuch", "nosuch")
    with pytest.raises(ModuleNotFoundError, match="deploy.cli.nosuch"):
        cli.build_parser()
