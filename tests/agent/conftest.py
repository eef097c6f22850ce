"""Job commands shared by the backend tests. The real clusters (``slurm_cluster``,
``ray_cluster``), ``wait_until``, ``alive`` and ``require`` come from the root conftest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPORT_COMMAND = (
    '{ echo "cvd=$CUDA_VISIBLE_DEVICES"; echo "work=$SUANLI_WORK_ID"; '
    'echo "attempt=$SUANLI_ATTEMPT"; echo "gpus=$SUANLI_GPUS"; echo "resume=$SUANLI_RESUME"; '
    'echo "ckpt=$SUANLI_CHECKPOINT_DIR"; echo "foo=$FOO"; echo "cwd=$(pwd)"; } > report.txt; '
    "echo report-written; sleep {sleep_s}"
)

# Starts a child that ignores TERM (so only KILL or a group kill removes it), records the
# child's pid and the job shell's own ($$: the process group leader), then waits.
CHILD_COMMAND = (
    "sh -c 'trap \"\" TERM; sleep 600' & echo $! > child.pid; echo $$ > leader.pid; sleep 600"
)


@pytest.fixture(scope="session")
def report_command() -> Callable[[float], str]:
    """The shell command of a job that writes what it sees to report.txt in its cwd."""
    return lambda sleep_s: REPORT_COMMAND.replace("{sleep_s}", f"{sleep_s:g}")


@pytest.fixture(scope="session")
def child_command() -> str:
    return CHILD_COMMAND


@pytest.fixture(scope="session")
def read_report() -> Callable[[Path], dict[str, str]]:
    def read(path: Path) -> dict[str, str]:
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

    return read
