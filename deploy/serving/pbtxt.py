"""Protobuf text format for Triton's `config.pbtxt`.

A config is a dict: scalars become `key: value`, dicts become messages `key { ... }`, lists of
dicts repeated messages `key [ { ... }, { ... } ]`, lists of scalars `key: [ 1, 2 ]`, and a
`Map` the entries of a protobuf map (`key { key: "k" value: ... }`, one entry per item, as
`cc_model_filenames` and `parameters` are written in Triton's model_configuration.md). Strings
are quoted, `Enum` values (`TYPE_FP32`, `KIND_GPU`) bare. `Comment` lines are `#` comments,
which the text format allows anywhere. Standard library only.
"""
from __future__ import annotations

from typing import Any, Mapping


class Enum(str):
    """An enum value, written bare: `data_type: TYPE_FP32`."""


class Map(dict):
    """A protobuf map field: one `key { key: K value: V }` entry per item."""


class Comment(str):
    """A `# ...` line in a message (its key in the dict is ignored)."""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    raise TypeError(f"cannot write {type(value).__name__} in a config.pbtxt")


def _field(key: str, value: Any, indent: str) -> list[str]:
    inner = indent + "  "
    if isinstance(value, Comment):
        return [f"{indent}# {line}" for line in str(value).splitlines()]
    if isinstance(value, Map):
        out = []
        for k, v in value.items():
            out += [f"{indent}{key} {{", f"{inner}key: {_scalar(k)}", *_value_lines("value", v, inner), f"{indent}}}"]
        return out
    if isinstance(value, Mapping):
        return [f"{indent}{key} {{", *_body(value, inner), f"{indent}}}"]
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            out = [f"{indent}{key} ["]
            for i, v in enumerate(value):
                out += [f"{inner}{{", *_body(v, inner + "  "), f"{inner}}}{',' if i < len(value) - 1 else ''}"]
            return out + [f"{indent}]"]
        return [f"{indent}{key}: [ {', '.join(_scalar(v) for v in value)} ]"]
    return [f"{indent}{key}: {_scalar(value)}"]


def _value_lines(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, Mapping):
        return [f"{indent}{key} {{", *_body(value, indent + "  "), f"{indent}}}"]
    return [f"{indent}{key}: {_scalar(value)}"]


def _body(message: Mapping[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for key, value in message.items():
        if value is None:
            continue
        lines += _field(key, value, indent)
    return lines


def render(config: Mapping[str, Any]) -> str:
    """The config as config.pbtxt text (None values are left out)."""
    return "\n".join(_body(config, "")) + "\n"


def string_parameters(values: Mapping[str, str]) -> Map:
    """`parameters` of a ModelConfig: a map of name -> ModelParameter {string_value}."""
    return Map({k: {"string_value": str(v)} for k, v in values.items()})
