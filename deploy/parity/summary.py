"""The results in text, as the terminal shows them: the parity table, and a line of export's
own TF-vs-ONNX-Runtime numbers. Beside the result types, for every command that prints them."""
from __future__ import annotations

from typing import Any, Mapping

from .result import ParityResult


def summary_table(result: ParityResult) -> str:
    """The result as a text table, then why backends were skipped and what failed."""
    main = result.data.main_output
    rows = [("backend", "status", "result", "max|diff|/max|ref|", "cos min", "top1 agr", "top1 %", "Δ pts")]

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    for b, e in result.backends.items():
        m, a = e.outputs.get(main), e.accuracy
        verdict = {True: "PASS", False: "FAIL"}.get(e.passed, "-")
        rows.append((b, e.status, verdict, f(getattr(m, "max_abs_scaled", None), ".2e"),
                     f(getattr(m, "cosine_min", None), ".5f"), f(getattr(m, "top1_agreement", None), ".4f"),
                     f(getattr(a, "top1", None), ".2f"), f(getattr(a, "delta_top1_vs_fp32", None), "+.2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for b, e in result.backends.items():
        if e.status == "skipped":
            lines.append(f"skipped {b}: {e.reason}")
        for failure in e.failures:
            lines.append(f"FAIL {b}: {failure}")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"  # None: a non-finite value, or an all-zero reference


def export_parity_line(m: Mapping[str, Any]) -> str:
    """One output's export parity (its manifest record): the errors it is judged by, then top-1
    agreement where the output has classes ([N, classes]), else the minimum cosine (feature
    maps, dense [N, H, W, classes] outputs of --no-global-pool)."""
    text = f"max abs {_num(m['max_abs'])}, max abs scaled {_num(m['max_abs_scaled'])}"
    if m.get("softmax_excess") is not None:  # a softmax judged by its logits (deploy.parity.metrics)
        text += f" ({_num(max(m['softmax_excess'], 0.0))} beyond what the logits' error allows)"
    if m.get("top1_agreement") is not None:
        return text + f", top-1 agreement {m['top1_agreement']:.1%}"
    cosine = m.get("cosine_min")
    return text + (f", min cosine {cosine:.6f}" if cosine is not None else "")
