"""Shared parsing: read JSON or YAML text, turn pydantic errors into one clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from suanli.errors import InvalidInput

__all__ = ["load_document", "parse_model"]

M = TypeVar("M", bound=BaseModel)


def load_document(path: Path) -> Any:
    """The parsed content of a JSON or YAML file (by suffix; YAML otherwise)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read ({exc})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"{where}: invalid YAML: {problem}") from None


def parse_model(model: type[M], data: Any, where: str) -> M:
    """Validate ``data``; on failure one message listing each bad field and why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:10]:
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {loc}: {err['msg']}")
        more = f"\n  … and {exc.error_count() - 10} more" if exc.error_count() > 10 else ""
        raise InvalidInput(
            f"{where}: invalid {model.__name__}:\n" + "\n".join(lines) + more
        ) from None
