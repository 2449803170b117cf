"""Parity report for a bundle: `python tools/parity_report.py BUNDLE [options]` = `trtdeploy parity`."""
import sys

from deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(["parity", *sys.argv[1:]]))
