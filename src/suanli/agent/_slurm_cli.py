"""Talking to Slurm through its commands: running them, and the batch script a job runs."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from suanli.agent.backend import BackendUnavailable, WorkSpec
from suanli.agent.jobenv import shell_command, suanli_env

__all__ = ["UNREACHABLE", "CommandResult", "Runner", "batch_script", "run_command"]


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], Mapping[str, str], float], CommandResult]

# Messages that mean the controller (or its configuration) cannot be reached, not a refusal.
UNREACHABLE = (
    "Unable to contact",
    "Could not establish",
    "Connection refused",
    "Unable to process configuration",
    "Socket timed out",
    "timed out",
)


def run_command(argv: Sequence[str], env: Mapping[str, str], timeout_s: float) -> CommandResult:
    """Run a Slurm command; a timeout reads as an unreachable controller."""
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]} timed out after {timeout_s:g} s")
    except OSError as exc:
        raise BackendUnavailable(f"cannot run {argv[0]}: {exc.strerror}") from exc
    return CommandResult(done.returncode, done.stdout, done.stderr)


def batch_script(work: WorkSpec, backend: str, working_dir: Path, checkpoint_dir: Path) -> str:
    """The batch script for ``work``: its variables, its folders made and entered, then
    ``exec`` of its command (so signals reach it directly)."""
    env = {**work.env, **suanli_env(work, backend, checkpoint_dir)}
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    wd, cp = shlex.quote(str(working_dir)), shlex.quote(str(checkpoint_dir))
    return (
        "#!/bin/sh\n"
        f"# suanli work {work.id}, attempt {work.attempt}; written by the suanli agent\n"
        f"{exports}"
        f"mkdir -p {wd} {cp} && cd {wd} || exit 1\n"
        f"exec {shell_command(work.command)}\n"
    )
