#!/usr/bin/env python3
"""Train the embedded default model and write its checkpoint (committed under deploy/assets).

    python tools/train_default.py [--out deploy/assets/resnet_v2_digits] [--epochs 30] [--seed 0]
"""
import argparse
import json
import logging
import sys

from deploy.slim.registry import ASSETS, DEFAULT_MODEL
from deploy.train import train_default


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ASSETS / DEFAULT_MODEL))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    meta = train_default(args.out, epochs=args.epochs, seed=args.seed)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
