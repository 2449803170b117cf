"""Run a trtdeploy command with a fault injected at a bundle update's renames (tests only).

    python -m tests.bundle.inject --root BUNDLE --at N --signal KILL|INT|TERM [--before] -- ARGS...

Counts the os.replace calls whose target lies in BUNDLE (the commit journal's rename is the
first, then each file's, the manifest's last) and sends the signal to this process right
after the N-th one (`--before`: right before it, so nothing of the commit is renamed yet).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--at", type=int, required=True)
    p.add_argument("--signal", choices=("KILL", "INT", "TERM"), required=True)
    p.add_argument("--before", action="store_true")
    p.add_argument("args", nargs=argparse.REMAINDER)
    opts = p.parse_args()
    root = os.path.realpath(opts.root)
    sig = getattr(signal, f"SIG{opts.signal}")
    real_replace = os.replace
    count = 0

    def replace(src, dst, *a, **kw):
        nonlocal count
        inside = os.path.realpath(dst).startswith(root + os.sep)
        if inside:
            count += 1
            if opts.before and count == opts.at:
                os.kill(os.getpid(), sig)
        real_replace(src, dst, *a, **kw)
        if inside and not opts.before and count == opts.at:
            os.kill(os.getpid(), sig)

    os.replace = replace
    from deploy.cli import main as cli

    return cli([a for a in opts.args if a != "--"])


if __name__ == "__main__":
    sys.exit(main())
