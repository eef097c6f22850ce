"""Shared fixtures: the tiny and hand-checked scenarios under tests/sim/data (the public
traces are the root conftest's ``shared_traces``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.sim.scenario import Scenario, load_scenario

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny() -> Scenario:
    return load_scenario(str(DATA / "tiny.toml"))


@pytest.fixture(scope="session")
def hand() -> Scenario:
    return load_scenario(str(DATA / "hand.toml"))
