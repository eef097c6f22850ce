"""Backend settings from a configuration mapping, with errors a seller can read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from suanli.errors import InvalidInput

__all__ = ["parse_settings"]

M = TypeVar("M", bound=BaseModel)


def parse_settings(model: type[M], config: Mapping[str, object], what: str) -> M:
    """``config`` validated as ``model``; ``InvalidInput`` names the first bad field."""
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        raise InvalidInput(f"{what}: {where}: {err['msg']}") from None
