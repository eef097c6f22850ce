"""Placeholder while the serving work lands (filled in by the serving change)."""

from __future__ import annotations

from fastapi import APIRouter

from suanli.service.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["serving"], responses=PROBLEM_RESPONSES)
