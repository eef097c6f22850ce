"""The example files the README points at are valid as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.cli._spec_file import read_spec_file
from suanli.service.schemas.work import JobSpec, ServiceSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["service.yaml", "service-standin.yaml"])
def test_the_service_examples_are_valid_services(name: str) -> None:
    spec = ServiceSpec.model_validate(read_spec_file(EXAMPLES / name))
    assert spec.name == "chat"
    assert spec.command is not None and "$PORT" in spec.command
    assert "$SUANLI_PYTHON" in spec.command  # the agent's Python, shown in the sandbox


def test_the_job_example_is_a_valid_job() -> None:
    JobSpec.model_validate(read_spec_file(EXAMPLES / "job.yaml"))
