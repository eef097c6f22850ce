"""The agent's parts without an exchange: its journal, leases as WorkSpecs, backend states
as reports, and orphans found by their environment."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from suanli.agent.backend import Handle, JobState, JobStatus, ResumeMode, Usage
from suanli.agent.exchange import Lease
from suanli.agent.journal import Journal
from suanli.agent.orphans import find_orphans, stop_orphans
from suanli.agent.translate import clean_reason, end_report, running_report, work_spec
from suanli.errors import InvalidInput

LEASE = Lease(
    allocation_id="alloc-1",
    lease_token="tok-1",
    kind="job",
    item_id="job-1",
    pool_id="site/h100",
    gpu="H100",
    gpus=2,
    nodes=1,
    command="python train.py",
    image=None,
    planned_h=1.0,
    attempt=2,
    env={"FOO": "bar"},
    checkpoint_dir="/shared/ckpt",
    checkpoint_every_h=0.5,
)
HANDLE = Handle(backend="local", id="suanli-job-1-2", work_id="job-1", attempt=2, gpus=2)


def test_the_journal_replays_what_the_agent_holds_and_still_has_to_send(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    h = j.hold(LEASE)
    j.set_handle("alloc-1", HANDLE)
    j.queue_report(h, "running", {"allocation_id": "alloc-1", "state": "running"})
    other = j.hold(Lease(**{**LEASE.to_json(), "allocation_id": "alloc-2", "nodes": 1}))
    j.queue_report(other, "failed", {"allocation_id": "alloc-2", "state": "failed"})
    j.drop("alloc-2")
    j.sent("alloc-1.tok-1.running")
    j.set_token("alloc-1", "tok-9")
    # A crash mid-write leaves half a line: everything before it stands.
    j._file.write('{"op": "drop", "al')
    j.close()

    again = Journal(tmp_path)
    assert list(again.held) == ["alloc-1"]
    held = again.held["alloc-1"]
    assert (held.token, held.reported, held.handle) == ("tok-9", "running", HANDLE)
    assert held.lease.env == {"FOO": "bar"} and held.lease.attempt == 2
    assert list(again.outbox) == ["alloc-2.tok-1.failed"]  # queued, never sent
    again.close()
    # Opening rewrote the file compacted: one hold, its handle and state, one report.
    assert len((tmp_path / "journal.jsonl").read_text().splitlines()) == 4


def test_one_agent_per_state_directory(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    with pytest.raises(InvalidInput, match="another agent is running"):
        Journal(tmp_path)
    j.close()
    Journal(tmp_path).close()


def test_a_lease_becomes_a_work_spec() -> None:
    spec = work_spec(LEASE, "H100", None)
    assert (spec.id, spec.attempt, spec.gpus, spec.gpu_model) == ("job-1", 2, 2, "H100")
    assert spec.job_name == "suanli-job-1-2"
    assert spec.resume.mode is ResumeMode.CHECKPOINT
    assert spec.resume.checkpoint_every_s == 1800.0  # 0.5 h
    assert str(spec.checkpoint_dir) == "/shared/ckpt" and spec.working_dir is None
    replica = Lease(**{**LEASE.to_json(), "kind": "replica", "nodes": 1})
    rspec = work_spec(replica, None, 8123)
    assert rspec.id == "alloc-1" and rspec.env["PORT"] == "8123"
    with pytest.raises(InvalidInput, match="reserved"):
        work_spec(Lease(**{**LEASE.to_json(), "env": {"SUANLI_X": "1"}, "nodes": 1}), None, None)


@pytest.mark.parametrize(
    ("state", "exit_code", "reported"),
    [
        (JobState.SUCCEEDED, 0, "succeeded"),
        (JobState.FAILED, 137, "failed"),
        # Cancelled on the site by someone else: preempted, so it runs again elsewhere.
        (JobState.CANCELLED, 143, "preempted"),
    ],
)
def test_backend_states_become_reports(state: JobState, exit_code: int, reported: str) -> None:
    status = JobStatus(state, exit_code, "done\nreally", "line 1\nline 2")
    usage = Usage(7200.0, 2, 100.0, 3700.0, "slurm controller")
    body = end_report(LEASE, HANDLE, status, usage)
    assert body["state"] == reported and body["exit_code"] == exit_code
    assert body["gpu_hours"] == 2.0  # 7200 GPU-seconds
    assert body["usage"]["source"] == "slurm controller"
    assert body["log_tail"] == "line 1\nline 2"
    assert body["lease_token"] == "tok-1" and body["backend_job_id"] == "suanli-job-1-2"
    expected = "cancelled on the site: done really" if reported == "preempted" else "done really"
    assert body["reason"] == expected


def test_reports_stay_within_the_exchange_limits() -> None:
    assert clean_reason("a\x00b\n\tc") == "a b c"  # each run of control characters: a space
    assert clean_reason("\n\t") is None
    long = clean_reason("x" * 300)
    assert long is not None and len(long) == 100 and long.endswith("…")
    body = running_report(LEASE, HANDLE, "local", "http://h:1")
    assert body == {
        "allocation_id": "alloc-1",
        "lease_token": "tok-1",
        "state": "running",
        "backend_job_id": "suanli-job-1-2",
        "reason": "running on local as suanli-job-1-2",
        "endpoint": "http://h:1",
    }


def test_orphans_are_found_by_their_environment_and_stopped(tmp_path: Path) -> None:
    env = {"SUANLI_WORK_ID": "job-orph", "SUANLI_ATTEMPT": "3", "SUANLI_BACKEND": "local"}
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 600 & wait"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        orphan = find_orphans("job-orph", 3)
        while len(orphan.pgids) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            orphan = find_orphans("job-orph", 3)
        assert orphan.pgids == (proc.pid,)  # the shell leads the group; sleep is in it
        assert orphan.started_at_s is not None and abs(orphan.started_at_s - time.time()) < 60
        assert find_orphans("job-orph", 2).pgids == ()  # another attempt's: not these
        stop_orphans(orphan, grace_s=2.0)
        proc.wait(10)
        assert find_orphans("job-orph", 3).pgids == ()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
