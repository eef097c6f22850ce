"""Reading Slurm 22.05 output (lines captured from a real slurmctld), and the slurm backend's
fallbacks driven by a fake command runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from suanli.agent import BackendError, BackendUnavailable, Handle, JobState
from suanli.agent._slurm_parse import (
    GresEntry,
    expand_indices,
    job_state,
    parse_exit_code,
    parse_gres,
    parse_jobcomp,
    parse_nodes,
    parse_scontrol_job,
)
from suanli.agent.slurm import CommandResult, SlurmBackend, SlurmSettings

RUNNING_JOB = (
    "JobId=1 JobName=b.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 "
    "Nice=0 Account=(null) QOS=(null) JobState=RUNNING Reason=None Dependency=(null) "
    "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 DerivedExitCode=0:0 "
    "RunTime=00:00:02 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-29T15:24:57 "
    "EligibleTime=2026-11-29T15:24:57 AccrueTime=2026-11-29T15:24:57 "
    "StartTime=2026-11-29T15:25:00 EndTime=Unknown Deadline=N/A SuspendTime=None "
    "SecsPreSuspend=0 LastSchedEval=2026-11-29T15:25:00 Scheduler=Main Partition=debug "
    "AllocNode:Sid=localhost:15384 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm "
    "BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* "
    "JOB_GRES=gpu:h100:2   Nodes=vm CPU_IDs=0 Mem=0 GRES=gpu:h100:2(IDX:0-1) MinCPUsNode=1 "
    "MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK "
    "Contiguous=0 Licenses=(null) Network=(null) Command=/tmp/sj/b.sh WorkDir=/tmp/sj "
    "StdErr=/tmp/sj/e1.log StdIn=/dev/null StdOut=/tmp/sj/o1.log Power= TresPerNode=gres:gpu:2"
)
FAILED_JOB = (
    RUNNING_JOB.replace("JobState=RUNNING Reason=None", "JobState=FAILED Reason=NonZeroExitCode")
    .replace("ExitCode=0:0 Derived", "ExitCode=3:0 Derived")
    .replace("EndTime=Unknown", "EndTime=2026-11-29T15:25:02")
    .replace("GRES=gpu:h100:2(IDX:0-1)", "GRES=")
)
PENDING_JOB = (
    RUNNING_JOB.replace("JobState=RUNNING Reason=None", "JobState=PENDING Reason=Resources")
    .replace("StartTime=2026-11-29T15:25:00", "StartTime=2026-11-29T16:00:00")
    .replace("JOB_GRES=gpu:h100:2   Nodes=vm CPU_IDs=0 Mem=0 GRES=gpu:h100:2(IDX:0-1) ", "")
)
NODE = (
    "NodeName=vm Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=64 CPUTot=64 CPULoad=2.96 "
    "AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:h100:8 GresDrain=N/A "
    "GresUsed=gpu:h100:5(IDX:0-4) NodeAddr=127.0.0.1 NodeHostName=vm Version=22.05.8 "
    "OS=Linux 6.18.44-fc-v857 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=512000 AllocMem=0 "
    "State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=debug"
)
JOBCOMP = "1|FAILED|3:0|2026-11-29T15:25:00|2026-11-29T15:25:02\n2|COMPLETED|0:0|x|y\n"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("slurm_state", "ours"),
    [
        ("PENDING", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("COMPLETING", JobState.RUNNING),  # epilog still running: GPUs still held
        ("COMPLETED", JobState.SUCCEEDED),
        ("CANCELLED by 0", JobState.CANCELLED),  # sacct's spelling
        ("FAILED", JobState.FAILED),
        ("TIMEOUT", JobState.FAILED),
        ("OUT_OF_MEMORY", JobState.FAILED),
        ("NODE_FAIL", JobState.FAILED),
    ],
)
def test_job_states_map_to_ours(slurm_state: str, ours: JobState) -> None:
    assert job_state(slurm_state) is ours


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("0:0", 0),
        ("3:0", 3),
        ("0:15", 143),  # killed by SIGTERM: 128 + 15
        ("0:9", 137),  # killed by SIGKILL: 128 + 9
        ("", None),
    ],
)
def test_exit_codes(text: str, code: int | None) -> None:
    assert parse_exit_code(text) == code


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        ("gpu:h100:8", [GresEntry("gpu", "h100", 8, ())]),
        ("gpu:8", [GresEntry("gpu", None, 8, ())]),
        ("gpu:h100:5(IDX:0-4)", [GresEntry("gpu", "h100", 5, (0, 1, 2, 3, 4))]),
        ("gpu:h100:8(S:0-1)", [GresEntry("gpu", "h100", 8, ())]),  # socket list, no indices
        (
            "gpu:a100:2(IDX:0,3),gpu:h100:1(IDX:5)",
            [GresEntry("gpu", "a100", 2, (0, 3)), GresEntry("gpu", "h100", 1, (5,))],
        ),
        ("gpu:h100:0(IDX:N/A)", [GresEntry("gpu", "h100", 0, ())]),
        ("(null)", []),
        ("", []),
    ],
)
def test_gres_strings(text: str, entries: list[GresEntry]) -> None:
    assert parse_gres(text) == entries


def test_index_ranges() -> None:
    assert expand_indices("0-2,5,7-8") == (0, 1, 2, 5, 7, 8)
    assert expand_indices("N/A") == ()


def test_running_job_record() -> None:
    job = parse_scontrol_job(RUNNING_JOB)
    assert (job.job_id, job.slurm_state, job.gpus, job.gpu_ids) == ("1", "RUNNING", 2, ("0", "1"))
    assert job.start_s == _ts("2026-11-29T15:25:00") and job.end_s is None
    assert job.exit_code is None  # not ended yet
    assert (job.stdout, job.stderr) == ("/tmp/sj/o1.log", "/tmp/sj/e1.log")


def test_finished_job_keeps_its_gpu_count_after_the_indices_are_gone() -> None:
    job = parse_scontrol_job(FAILED_JOB)
    assert (job.slurm_state, job.reason, job.exit_code) == ("FAILED", "NonZeroExitCode", 3)
    assert job.gpus == 2 and job.gpu_ids == ()  # JOB_GRES stays, GRES= empties at the end
    assert job.end_s is not None and job.start_s is not None
    assert job.end_s - job.start_s == 2.0  # 15:25:00 → 15:25:02


def test_pending_job_has_no_start_even_with_an_expected_start_time() -> None:
    job = parse_scontrol_job(PENDING_JOB)
    assert (job.slurm_state, job.reason, job.start_s, job.gpus) == (
        "PENDING",
        "Resources",
        None,
        None,
    )


def test_jobcomp_record() -> None:
    job = parse_jobcomp(JOBCOMP, "1")
    assert job is not None
    assert (job.slurm_state, job.exit_code, job.gpus) == ("FAILED", 3, None)
    assert job.end_s is not None and job.start_s is not None and job.end_s - job.start_s == 2.0
    assert parse_jobcomp(JOBCOMP, "9") is None


def test_node_gpus_used_and_state() -> None:
    (node,) = parse_nodes(NODE + "\nNodeName=cpu1 Gres=(null) State=IDLE\n")
    assert (node.node, node.partitions, node.state) == ("vm", ("debug",), "MIXED")
    assert node.gpus == [GresEntry("gpu", "h100", 8, ())]
    assert node.used_of("h100") == 5 and node.usable
    drained = parse_nodes(NODE.replace("State=MIXED", "State=MIXED+DRAIN"))[0]
    down = parse_nodes(NODE.replace("State=MIXED", "State=IDLE*"))[0]  # not responding
    assert not drained.usable and not down.usable


class FakeSlurm:
    """Answers Slurm commands from a table: argv[0] and argv[1:] joined → result."""

    def __init__(self, answers: Mapping[str, CommandResult]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str], timeout_s: float
    ) -> CommandResult:
        self.calls.append(list(argv))
        return self.answers.get(" ".join(argv), CommandResult(1, "", "unexpected command"))


def _backend(tmp_path: Path, answers: Mapping[str, CommandResult]) -> SlurmBackend:
    return SlurmBackend(SlurmSettings(runs_dir=tmp_path), run=FakeSlurm(answers), now=lambda: 0.0)


def _handle(job_id: str, gpus: int) -> Handle:
    return Handle(backend="slurm", id=job_id, work_id="w", attempt=1, gpus=gpus, run_dir=None)


def test_a_job_the_controller_forgot_is_read_from_the_completion_log(tmp_path: Path) -> None:
    backend = _backend(
        tmp_path,
        {
            "scontrol -o show job -d 1": CommandResult(
                1, "", "slurm_load_jobs error: Invalid job id specified"
            ),
            "sacct -c -P -n -o JobID,State,ExitCode,Start,End -j 1": CommandResult(0, JOBCOMP, ""),
        },
    )
    st = backend.status(_handle("1", 3))
    assert (st.state, st.exit_code) == (JobState.FAILED, 3)
    use = backend.usage(_handle("1", 3))
    assert use.gpu_seconds == 6.0  # 2 s × the 3 GPUs asked for (the log records no GRES)
    assert "completion log" in use.source


def test_a_job_slurm_never_heard_of_is_an_error(tmp_path: Path) -> None:
    backend = _backend(
        tmp_path,
        {
            "scontrol -o show job -d 7": CommandResult(1, "", "Invalid job id specified"),
            "sacct -c -P -n -o JobID,State,ExitCode,Start,End -j 7": CommandResult(0, "", ""),
        },
    )
    with pytest.raises(BackendError, match="no record of job 7"):
        backend.status(_handle("7", 1))


def test_a_controller_that_does_not_answer_is_unavailable(tmp_path: Path) -> None:
    backend = _backend(
        tmp_path,
        {
            "scontrol -o show node -d": CommandResult(
                1, "", "slurm_load_node error: Unable to contact slurm controller (connect failure)"
            ),
        },
    )
    with pytest.raises(BackendUnavailable):
        backend.discover()


def test_running_usage_counts_up_to_now(tmp_path: Path) -> None:
    start = _ts("2026-11-29T15:25:00")
    backend = SlurmBackend(
        SlurmSettings(runs_dir=tmp_path),
        run=FakeSlurm({"scontrol -o show job -d 1": CommandResult(0, RUNNING_JOB, "")}),
        now=lambda: start + 10.0,
    )
    use = backend.usage(_handle("1", 2))
    assert (use.gpu_seconds, use.ended_at_s) == (20.0, None)  # 10 s so far × 2 GPUs
