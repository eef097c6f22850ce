"""Shared fixtures: the tiny and hand-checked scenarios under tests/sim/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.sim.scenario import Scenario, load_scenario

DATA = Path(__file__).parent / "data"
SHARED_TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny() -> Scenario:
    return load_scenario(str(DATA / "tiny.toml"))


@pytest.fixture(scope="session")
def hand() -> Scenario:
    return load_scenario(str(DATA / "hand.toml"))


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    """The public traces next to the project (``../shared/traces``); skips when absent."""
    if not SHARED_TRACES.is_dir():
        pytest.skip("../shared/traces is not present")
    return SHARED_TRACES
