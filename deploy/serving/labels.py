"""Class names for each output index of a classifier, as the serving side reads them.

The names come from a labels file (one class name a line, the format `trtdeploy infer --labels`
reads: one line per class, or one per model output with slim's background class first), else
they are made up (`class 0`, ...). A model with label offset 1 (a 1001-class slim checkpoint)
has the background class at output 0: it gets the name "background", so that output index i
is named by line i. Triton's `label_filename` is one name a line in output order
(docs/protocol/extension_classification.md: the label "associated with that index");
DeepStream's classifier labels file is one line per output layer, its names separated by `;`
(nvdsinfer's `parseLabelsFile` splits each line on `;`, and the default softmax parser names
class c of layer l by `m_Labels[l][c]`). Standard library only.
"""
from __future__ import annotations

from pathlib import Path

from ..bundle import Bundle
from ..data.labels import read_labels
from ..errors import UsageError

BACKGROUND = "background"


def read_class_names(path: Path, bundle: Bundle) -> list[str]:
    """Names from `path`, one per model output (deploy.data.labels: one per class or per output)."""
    outputs, offset = _num_outputs(bundle), bundle.label_offset
    lines = read_labels(path, outputs, offset)
    return lines if len(lines) == outputs else [BACKGROUND] * offset + lines


def output_names(bundle: Bundle, labels: Path | None = None) -> list[str]:
    """One name per index of the class output: the labels file's, else `class N`."""
    if not bundle.class_outputs:
        raise UsageError(f"{bundle.root}: no [N, num_classes] output, so nothing to name; serving writes labels "
                         "for classifiers (its outputs are feature maps)")
    if labels is not None:
        return read_class_names(labels, bundle)
    offset = bundle.label_offset
    return [BACKGROUND] * offset + [f"class {i}" for i in range(_num_outputs(bundle) - offset)]


def _num_outputs(bundle: Bundle) -> int:
    return int(bundle.num_classes or 0)


def check_names(names: list[str], separator: str | None = None) -> None:
    """Refuse names a labels format cannot carry (a line break; DeepStream's `;`)."""
    for i, name in enumerate(names):
        if "\n" in name or "\r" in name or (separator and separator in name):
            what = f"{separator!r} or a line break" if separator else "a line break"
            raise UsageError(f"class name {i} ({name!r}) contains {what}, which the labels file cannot hold; "
                             "rename it in --labels")


def triton_label_file(names: list[str]) -> str:
    check_names(names)
    return "".join(f"{n}\n" for n in names)


def deepstream_label_file(names: list[str]) -> str:
    check_names(names, ";")
    return ";".join(names) + "\n"
