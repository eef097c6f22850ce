"""Reading a work file for ``suanli submit`` without trusting it.

A job or service file is small and plain, so anything else is refused before it is
expanded or sent, with a message that names the problem:

- larger than ``MAX_FILE_BYTES`` (the exchange refuses larger request bodies anyway);
- YAML whose aliases would expand to more than ``MAX_VALUES`` values (a "billion laughs"
  file is a few hundred bytes that expand to gigabytes): the size is counted on the
  composed node graph, where each anchor is one shared node, so counting costs as little
  as the file is long;
- nesting deeper than the parser can follow, or an alias that contains itself;
- numbers that are not finite (YAML ``.nan``/``.inf``, JSON ``NaN``/``Infinity``): the
  field is named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from suanli.errors import InvalidInput

__all__ = ["MAX_FILE_BYTES", "MAX_VALUES", "read_spec_file"]

MAX_FILE_BYTES = 1_048_576
MAX_VALUES = 100_000


def read_spec_file(path: Path) -> dict[str, Any]:
    """The mapping in a job or service file (JSON by suffix, YAML otherwise); InvalidInput
    naming the problem for anything else (see the module docstring)."""
    text = _read(path)
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else _load_yaml(text, path)
        if not isinstance(data, dict):
            raise InvalidInput(f"{path}: expected a mapping (kind: job|service, name: …)")
        for field, value in _numbers(data, ""):
            if not math.isfinite(value):
                raise InvalidInput(
                    f"{path}: {field}: {value} is not a finite number; give a plain number"
                )
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise InvalidInput(f"{path}: nested too deeply to be a work file") from None
    return data


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidInput(
                f"{path}: {size:,} bytes; a work file may be at most {MAX_FILE_BYTES:,} bytes"
            )
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read ({exc})") from None


def _load_yaml(text: str, path: Path) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_size(node, {}, set(), path)
        if values > MAX_VALUES:
            raise InvalidInput(
                f"{path}: its YAML aliases expand to {values:,} values (at most "
                f"{MAX_VALUES:,}); write the values out or drop the anchors"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], path: Path) -> int:
    """How many values ``node`` becomes once every alias is copied out (each node counted
    once per place it appears); memoized per node, so shared anchors cost one visit."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise InvalidInput(f"{path}: a YAML anchor contains an alias to itself")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes, open_, path) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, sizes, open_, path) + _expanded_size(v, sizes, open_, path)
    open_.discard(key)
    sizes[key] = total = min(total, MAX_VALUES + 1)  # past the cap, the count is moot
    return total


def _numbers(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """Every float in ``value`` with its field path (``resources.gpus``, ``env[0]``)."""
    if isinstance(value, float):
        yield where or "(top level)", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{where}[{i}]")
