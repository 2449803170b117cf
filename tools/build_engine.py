"""Build a TensorRT engine from a bundle: same as `trtdeploy build BUNDLE ...`.

Run it from a checkout after `pip install -e .` (this script adds nothing to sys.path)."""
import sys

from deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
