"""A tiny linear 'model' with C logits as a bundle (manifest.json + reference.npz), runners that
compute it (optionally corrupted), and a factory that hands them to parity."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deploy.bundle import Bundle
from deploy.parity import Skip, backends
from deploy.runners.base import Runner, TensorSpec

from ..helpers import record

C = 10  # classes of the tiny fake model
FEATURES = 6


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_bundle(root: Path, n: int = 40, label_offset: int = 1, labels: bool = True, seed: int = 0) -> Bundle:
    """manifest.json + reference.npz of a linear 'model' with C logits (index 0 = background when offset 1)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    w = rng.standard_normal((FEATURES, C)).astype(np.float32)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    # Feature 0 is a constant 1 that lifts every logit but the background one: no image is background.
    x[:, 0] = 1.0
    w[0, 1:] = 8.0
    w[:, 0] = 0.0
    logits = x @ w
    manifest = {
        "format": 1,
        "model": {"name": "tiny", "num_classes": C, "image_size": [1, 1], "weights": "random"},
        "inputs": [{"name": "input", "shape": [-1, FEATURES], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [-1, C], "dtype": "float32"},
                    {"name": "predictions", "shape": [-1, C], "dtype": "float32"}],
        "preprocessing": {"preset": "digits", "height": 1, "width": 1, "layout": "NCHW"},
        "label_offset": label_offset,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    arrays = {"input": x, "output:logits": logits, "output:predictions": softmax(logits)}
    if labels:
        y = logits.argmax(axis=1) - label_offset
        y[:4] = (y[:4] + 3) % (C - label_offset)  # the reference gets these 4 wrong: accuracy < 100%
        arrays["labels"] = y
    np.savez(root / "reference.npz", **arrays)
    record(root, "reference.npz")
    bundle = Bundle(root)
    bundle.w = w  # the fake runners compute the same model
    return bundle


class FakeRunner(Runner):
    """The tiny linear model, with an optional corruption of its logits."""

    def __init__(self, w: np.ndarray, name: str, corrupt=None):
        self.w = w
        self.name = name
        self.corrupt = corrupt
        self.calls = 0
        self.active = False

    def activate(self) -> None:
        self.active = True

    def close(self) -> None:
        self.active = False

    def input_specs(self):
        return [TensorSpec("input", (None, FEATURES), np.dtype(np.float32))]

    def _infer(self, feed):
        self.calls += 1
        logits = feed["input"] @ self.w
        if self.corrupt is not None:
            logits = self.corrupt(logits)
        return {"logits": logits, "predictions": softmax(logits)}


def swap_top2(every: int):
    """Swap the two largest logits in every `every`-th row: top-1 changes, top-5 keeps it."""
    def f(logits):
        out = logits.copy()
        for i in range(0, len(out), every):
            a, b = np.argsort(-out[i])[:2]
            out[i, [a, b]] = out[i, [b, a]]
        return out
    return f


def install_runners(monkeypatch, bundle: Bundle, specs: dict):
    """make_runner returns FakeRunner/Skip per backend; anything unlisted is skipped."""
    made = {}

    def fake(backend, b, engines=None):
        spec = specs.get(backend, Skip(f"{backend}: not in this test"))
        if isinstance(spec, Skip) or isinstance(spec, Runner):
            made[backend] = spec
            return spec
        made[backend] = FakeRunner(bundle.w, backend, spec)
        return made[backend]

    monkeypatch.setattr(backends, "make_runner", fake)
    return made
