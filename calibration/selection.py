"""The evaluation data of `calibrate --max-drop` and `--method auto`, and what they record.

The INT8 model is judged on images calibration did not see: `--eval-data E`, or by default a
held-out part of the calibration data D. The split is deterministic: each input of D is
ranked by sha256("held-out/<seed>", its path or row) and the first HELD_OUT_FRACTION of D
(at least one input, at most MAX_HELD_OUT) are held out; calibration (and its --num-images
subset) uses the rest. calibration/scales.json records which (`evaluation`), so the split can
be checked and repeated.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from deploy.errors import UsageError

log = logging.getLogger("trtdeploy.calibration")

HELD_OUT_FRACTION = 0.2
MAX_HELD_OUT = 1000


def held_out_count(total: int) -> int:
    return max(1, min(MAX_HELD_OUT, round(total * HELD_OUT_FRACTION)))


def evaluation_data(load: Callable[[Any, int | None], Any], data: Any, eval_data: Any, num_images: int | None,
                    seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """(calibration set, evaluation set, record) for the data paths given.

    `load(path, num)` reads an input set (num: a seeded subset, None for all).
    """
    if eval_data is not None:
        calib = load(data, num_images)
        held = load(eval_data, None)
        record = {"source": str(held.source), "held_out": False}
    else:
        whole = load(data, None)
        if len(whole) < 2:
            raise UsageError(f"{whole.source}: {len(whole)} input(s) cannot be split into calibration and "
                             "evaluation images; pass --eval-data")
        rest, held = whole.split(held_out_count(len(whole)), seed)
        calib = rest.subset(num_images, seed)
        record = {"source": str(whole.source), "held_out": True, "fraction": HELD_OUT_FRACTION,
                  "max_held_out": MAX_HELD_OUT, "seed": seed, "split_key": f"held-out/{seed}"}
        log.info("evaluation: %d of %d inputs held out of %s (seed %d); calibrating on %d", len(held), len(whole),
                 whole.source, seed, len(calib))
    if len(held) < 50:
        log.warning("evaluating INT8 on %d images only: one image moves the score by %.1f points", len(held),
                    100.0 / len(held))
    record.update({"count": len(held), "sha256": held.sha256, "labels": held.labels is not None})
    return calib, held, record


def final_evaluation(evalset: Any, int8_bytes: bytes, auto: Any, budget: Any) -> Any:
    """The written model's evaluation: the search's or auto's when they scored this very model."""
    if budget is not None:
        return budget.chosen.evaluation
    if auto is not None and not isinstance(auto, dict):
        return auto.chosen.evaluation
    return evalset.evaluate(int8_bytes)


def record(scales: dict[str, Any], int8_info: dict[str, Any], requested_method: str, evaluation: dict | None,
           auto: Any, budget: Any) -> None:
    """Add the evaluation, the method choice and the budget search to scales.json's content and
    to the manifest's precision.int8 (a summary; scales.json keeps every trial)."""
    if evaluation is None:
        return
    scales["evaluation"] = evaluation
    int8_info["requested_method"] = requested_method
    int8_info["evaluation"] = {k: evaluation[k] for k in ("source", "held_out", "count", "sha256", "int8")}
    if auto is not None:
        scales["auto"] = auto if isinstance(auto, dict) else auto.to_json()
        int8_info["auto"] = scales["auto"]["chosen"]
    if budget is not None:
        scales["budget"] = budget.to_json()
        chosen = budget.chosen.evaluation.to_json()
        int8_info["budget"] = {"max_drop_points": budget.max_drop, "met": budget.met,
                               "kept_nodes": list(budget.chosen.nodes), "kept_layers": list(budget.chosen.layers),
                               "trials": len(budget.trials), **chosen}
