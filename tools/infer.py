"""Classify images with a bundle's engine or ONNX model: same as `trtdeploy infer BUNDLE IMAGE...`.

Run it from a checkout after `pip install -e .` (this script adds nothing to sys.path)."""
import sys

from deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
