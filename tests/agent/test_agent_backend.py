"""The backend interface's values, the job environment every backend gives, the registry."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.agent import (
    Feature,
    Limitation,
    ResumeContract,
    ResumeMode,
    WorkSpec,
    create_backend,
    default_registry,
)
from suanli.agent.jobenv import job_paths, log_tail, passed_env, shell_command, suanli_env
from suanli.errors import InvalidInput, UnknownName


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"id": "", "command": "true"}, "must be 1-64 characters"),
        ({"id": "a/b", "command": "true"}, "must be 1-64 characters"),  # would escape runs_dir
        ({"id": "x" * 65, "command": "true"}, "must be 1-64 characters"),
        ({"id": "w", "command": "  "}, "empty command"),
        ({"id": "w", "command": ()}, "empty argv"),
        ({"id": "w", "command": "true", "gpus": -1}, "gpus >= 0"),
        ({"id": "w", "command": "true", "gpus": 3, "nodes": 2}, "do not split evenly"),  # 3/2
        ({"id": "w", "command": "true", "attempt": 0}, "attempt >= 1"),
        ({"id": "w", "command": "true", "env": {"SUANLI_WORK_ID": "x"}}, "reserved"),
        ({"id": "w", "command": "true", "env": {"X;rm -rf /": "x"}}, "not variable names"),
    ],
)
def test_bad_work_is_refused_with_a_reason(kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        WorkSpec(**kwargs)  # type: ignore[arg-type]


def test_resume_contract_checks_its_numbers() -> None:
    with pytest.raises(InvalidInput, match="checkpoint_every_s"):
        ResumeContract(checkpoint_every_s=0)
    with pytest.raises(InvalidInput, match="stop_grace_s"):
        ResumeContract(stop_grace_s=-1)


def test_each_attempt_is_a_new_job_sharing_the_checkpoints(tmp_path: Path) -> None:
    first = WorkSpec(id="train", command="true")
    second = WorkSpec(id="train", command="true", attempt=2)
    p1, p2 = job_paths(tmp_path, first), job_paths(tmp_path, second)
    assert (first.job_name, second.job_name) == ("suanli-train-1", "suanli-train-2")
    assert p1.run_dir != p2.run_dir and p1.working_dir == p1.run_dir / "work"
    assert p1.checkpoint_dir == p2.checkpoint_dir == tmp_path / "train" / "checkpoints"


def test_work_may_name_its_own_folders_inside_its_run_folder(tmp_path: Path) -> None:
    work = WorkSpec(
        id="w", command="true", working_dir=Path("src/a"), checkpoint_dir=Path("ck"), attempt=2
    )
    paths = job_paths(tmp_path, work)
    assert paths.working_dir == tmp_path / "suanli-w-2" / "src" / "a"
    assert paths.checkpoint_dir == tmp_path / "w" / "ck"  # shared by the work's attempts


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("working_dir", "/var/lib/suanli"),  # absolute: anywhere on the site
        ("working_dir", "../other-job/work"),  # climbs into another job's folder
        ("checkpoint_dir", "ck/../../x"),
        ("checkpoint_dir", "/root"),
    ],
)
def test_named_folders_outside_the_works_own_are_refused(
    tmp_path: Path, field: str, value: str
) -> None:
    work = WorkSpec(id="w", command="true", **{field: Path(value)})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=f"{field} .*relative path inside"):
        job_paths(tmp_path, work)


def test_suanli_variables(tmp_path: Path) -> None:
    work = WorkSpec(
        id="w",
        command="true",
        gpus=4,
        attempt=3,
        resume=ResumeContract(ResumeMode.CHECKPOINT, checkpoint_every_s=600, stop_grace_s=30),
    )
    assert suanli_env(work, "slurm", tmp_path) == {
        "SUANLI_WORK_ID": "w",
        "SUANLI_ATTEMPT": "3",
        "SUANLI_BACKEND": "slurm",
        "SUANLI_GPUS": "4",
        "SUANLI_CHECKPOINT_DIR": str(tmp_path),
        "SUANLI_RESUME": "checkpoint",
        "SUANLI_CHECKPOINT_EVERY_S": "600",
        "SUANLI_STOP_GRACE_S": "30",
        "SUANLI_PYTHON": sys.executable,
    }
    # Restart-only work promises no interval, so none is set.
    assert "SUANLI_CHECKPOINT_EVERY_S" not in suanli_env(
        WorkSpec(id="w", command="true"), "x", tmp_path
    )


def test_only_allow_listed_agent_variables_reach_jobs() -> None:
    env = {"PATH": "/bin", "HOME": "/root", "SUANLI_TOKEN": "secret", "AWS_SECRET": "s"}
    assert passed_env(env) == {"PATH": "/bin", "HOME": "/root"}


@pytest.mark.parametrize(
    ("command", "printed"),
    [
        (("printf", "%s|", "a b", "it's"), "a b|it's|"),  # argv words survive quoting
        ("echo one; echo two", "one\ntwo\n"),  # a shell string keeps its meaning
        ("cd /; exit 0", ""),  # and its cd/exit stay inside its own sh -c
    ],
)
def test_shell_command_runs_what_was_meant(command: tuple[str, ...] | str, printed: str) -> None:
    line = shell_command(command)
    out = subprocess.run(
        ["/bin/sh", "-c", f"exec {line}"], capture_output=True, text=True, check=True
    )
    assert out.stdout == printed
    assert shlex.split(line)  # one well-formed shell line


def test_log_tail_keeps_the_last_lines_and_marks_stderr(tmp_path: Path) -> None:
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    out.write_text("".join(f"line {i}\n" for i in range(100)))
    err.write_text("boom\n")
    tail = log_tail((out, err), lines=3)
    assert tail == "line 97\nline 98\nline 99\n[stderr.log]\nboom"
    assert log_tail((tmp_path / "missing.log",)) == ""


def test_registry_is_an_explicit_dict() -> None:
    registry = default_registry()
    assert sorted(registry) == ["local", "ray", "slurm"]
    with pytest.raises(UnknownName, match="did you mean: slurm"):
        create_backend(registry, "slurn", {})


@pytest.mark.parametrize(
    ("name", "config", "why"),
    [
        ("local", {}, "local backend: runs_dir: Field required"),
        ("slurm", {"runs_dir": "/tmp/x", "bogus": 1}, "slurm backend: bogus"),
        ("ray", {"runs_dir": "/tmp/x", "timeout_s": 0}, "ray backend: timeout_s"),
    ],
)
def test_bad_backend_config_names_the_field(name: str, config: dict[str, object], why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        create_backend(default_registry(), name, config)


def test_limitations_are_data_a_seller_can_read() -> None:
    lim = Limitation(Feature.ENERGY, "no NVML on this host")
    assert (lim.feature.value, lim.reason) == ("energy", "no NVML on this host")
