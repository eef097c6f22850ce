"""What every job sees, whatever the backend: its folders, its SUANLI_* variables, its command.

Folders, all under the backend's runs directory::

    <runs_dir>/<job_name>/            the run folder: job script, stdout.log, stderr.log
    <runs_dir>/<job_name>/work/       working directory (cwd); a work naming its own
                                      ``working_dir`` gets <runs_dir>/<job_name>/<that>
    <runs_dir>/<work id>/checkpoints/ checkpoint directory, shared by every attempt of the
                                      work so a re-run resumes; a named ``checkpoint_dir``
                                      is <runs_dir>/<work id>/<that>

Named folders are relative paths without ``..``: a buyer's work never chooses a place on
the site outside its own folders (the run folder is new for each attempt, so nothing an
earlier job left there — a link, say — can redirect it).

Variables (besides the work's own ``env``)::

    SUANLI_WORK_ID, SUANLI_ATTEMPT, SUANLI_BACKEND, SUANLI_GPUS (count given),
    SUANLI_CHECKPOINT_DIR, SUANLI_RESUME (restart | checkpoint),
    SUANLI_CHECKPOINT_EVERY_S (when the work promised an interval), SUANLI_PYTHON (the
    agent's interpreter, e.g. for ``$SUANLI_PYTHON -m suanli.engines.standin``), SUANLI_STOP_GRACE_S

The agent's own environment is not passed on (it may hold the agent's credentials); only the
names in ``PASSED_ENV`` are, so jobs still find their tools.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from suanli.agent.backend import WorkSpec
from suanli.errors import InvalidInput

__all__ = [
    "LOG_TAIL_LINES",
    "PASSED_ENV",
    "JobPaths",
    "job_paths",
    "log_tail",
    "passed_env",
    "shell_command",
    "suanli_env",
]

PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")
LOG_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class JobPaths:
    run_dir: Path
    working_dir: Path
    checkpoint_dir: Path
    stdout: Path
    stderr: Path


def job_paths(runs_dir: Path, work: WorkSpec) -> JobPaths:
    """Where a job's files go (see the module docstring); nothing is created here.
    ``InvalidInput`` when a named folder is absolute or climbs out with ``..``."""
    run_dir = runs_dir / work.job_name
    return JobPaths(
        run_dir=run_dir,
        working_dir=run_dir / _relative(work.working_dir, "working_dir", Path("work")),
        checkpoint_dir=runs_dir
        / work.id
        / _relative(work.checkpoint_dir, "checkpoint_dir", Path("checkpoints")),
        stdout=run_dir / "stdout.log",
        stderr=run_dir / "stderr.log",
    )


def _relative(given: Path | None, field: str, default: Path) -> Path:
    if given is None or given == Path("."):
        return default
    if given.is_absolute() or ".." in given.parts:
        raise InvalidInput(
            f"{field} {str(given)!r}: must be a relative path inside the work's own folder "
            "on the site, without '..'"
        )
    return given


def suanli_env(work: WorkSpec, backend: str, checkpoint_dir: Path) -> dict[str, str]:
    """The SUANLI_* variables for ``work`` (see the module docstring)."""
    env = {
        "SUANLI_WORK_ID": work.id,
        "SUANLI_ATTEMPT": str(work.attempt),
        "SUANLI_BACKEND": backend,
        "SUANLI_GPUS": str(work.gpus),
        "SUANLI_CHECKPOINT_DIR": str(checkpoint_dir),
        "SUANLI_RESUME": work.resume.mode.value,
        "SUANLI_STOP_GRACE_S": f"{work.resume.stop_grace_s:g}",
        # The agent's own interpreter (shown read-only in the sandbox), so that a command
        # can run Python and the engines that ship with suanli where the host has none.
        "SUANLI_PYTHON": sys.executable,
    }
    if work.resume.checkpoint_every_s is not None:
        env["SUANLI_CHECKPOINT_EVERY_S"] = f"{work.resume.checkpoint_every_s:g}"
    return env


def passed_env(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``source`` (default: this process's environment)."""
    src = os.environ if source is None else source
    return {k: src[k] for k in PASSED_ENV if k in src}


def shell_command(command: tuple[str, ...] | str) -> str:
    """``command`` as one line for ``/bin/sh``: an argv is quoted word by word; a shell
    string runs in its own ``sh -c`` so its ``exit``/``cd`` cannot reach the wrapper."""
    if isinstance(command, str):
        return f"/bin/sh -c {shlex.quote(command)}"
    return shlex.join(command)


def log_tail(paths: tuple[Path, ...], lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of each existing, non-empty file, stderr marked as such."""
    parts: list[str] = []
    for path in paths:
        text = _read_tail(path, lines)
        if text:
            parts.append(text if path.name == "stdout.log" else f"[{path.name}]\n{text}")
    return "\n".join(parts)


def _read_tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            # Logs can be large; the tail lives in the last few KiB.
            f.seek(max(0, f.tell() - 256 * lines))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
