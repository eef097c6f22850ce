"""Metering exactly once: the journal survives kill -9, resends under the same batch id,
and deletes a batch only when the exchange acknowledges it (a duplicate ack included)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.errors import InvalidInput
from suanli.gateway.journal import Journal
from suanli.gateway.meter import Outcome
from suanli.gateway.reporter import Reporter

from .conftest import FakeLink, state


def ok(key: str = "k1", city: str = "Shanghai", prompt: int = 10, out: int = 5) -> Outcome:
    return Outcome(key, "svc1", city, "ok", prompt, 4, out, True, 1_700_000_000.0)


def files(d: Path, prefix: str) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.name.startswith(prefix))


def test_a_batch_aggregates_usage_and_demand(tmp_path: Path) -> None:
    j = Journal(tmp_path / "gw", "edge-test")
    try:
        j.append(ok())
        j.append(ok(prompt=20))
        j.append(ok(key="k2", city="Beijing"))
        j.append(Outcome("k1", "svc1", "Shanghai", "error", 10, 0, 0, False, 1.0))
        j.append(Outcome("k1", "svc1", "Shanghai", "rejected", 0, 0, 0, False, 1.0))
        j.append(Outcome("k1", "svc1", "Shanghai", "aborted", 0, 0, 0, False, 1.0))
        batch = j.roll()
        assert batch is not None and j.roll() is None
        r = batch.report
        usage = {(u.key_id, u.city): u for u in r.usage}
        u = usage[("k1", "Shanghai")]
        got = (u.requests, u.errors, u.input_tokens, u.cached_input_tokens, u.output_tokens)
        assert got == (4, 2, 6 + 16 + 10, 8, 10)
        assert usage[("k2", "Beijing")].requests == 1
        demand = {d.city: d for d in r.demand}
        d = demand["Shanghai"]
        assert (d.requests, d.rejected, d.slo_met, d.slo_total) == (5, 1, 2, 3)
        assert (d.prompt_tokens, d.cached_tokens, d.output_tokens) == (40, 8, 10)
        assert batch.tokens == {"k1": 15 + 25 + 10, "k2": 15}
        assert r.window_start <= r.window_end
    finally:
        j.close()


def test_files_are_private_and_the_dir_is_locked(tmp_path: Path) -> None:
    d = tmp_path / "gw"
    j = Journal(d, "edge-test")
    try:
        j.append(ok())
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert stat.S_IMODE(files(d, "segment-")[0].stat().st_mode) == 0o600
        j.roll()
        assert stat.S_IMODE(files(d, "batch-")[0].stat().st_mode) == 0o600
        with pytest.raises(InvalidInput, match="another gateway"):
            Journal(d, "edge-test")
    finally:
        j.close()


CRASHER = """
import os, sys, time
from pathlib import Path
from suanli.gateway.journal import Journal
from suanli.gateway.meter import Outcome
j = Journal(Path(sys.argv[1]), "edge-test")
o = Outcome("k1", "svc1", "Shanghai", "ok", 10, 4, 5, True, time.time())
for _ in range(3):
    j.append(o)
batch = j.roll()   # a batch that was (say) sent, its ack lost
j.append(o)
j.append(o)        # a segment not yet rolled
print(batch.batch_id, flush=True)
time.sleep(60)
"""


def test_kill_9_between_append_and_ack_resends_the_same_batch(tmp_path: Path) -> None:
    d = tmp_path / "gw"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(d)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        batch_id = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert len(batch_id) == 32
    link = FakeLink(state([], []))
    # the exchange had recorded the first batch; only its acknowledgement was lost
    j = Journal(d, "edge-test")
    try:
        assert batch_id in j.pending and len(j.pending) == 2  # + the left-over segment
        assert not files(d, "segment-")
        first = j.pending[batch_id]
        acked: list[str] = []
        asyncio.run(link.report(first.report))  # recorded before the crash
        reporter = Reporter(j, link, lambda b: acked.append(b.batch_id), interval_s=0.05)
        assert asyncio.run(reporter.send_pending())
        assert link.sent.count(batch_id) == 2  # resent under the same id
        assert set(acked) == set(link.reports) and len(acked) == 2
        assert not files(d, "batch-")  # deleted on the acks, the duplicate one included
        totals = link.usage_totals()
        assert totals["requests"] == 5 and totals["output"] == 25  # each request once
    finally:
        j.close()


def test_failed_sends_keep_the_batch_until_acknowledged(tmp_path: Path) -> None:
    d = tmp_path / "gw"
    link = FakeLink(state([], []))
    link.fail_reports = True
    j = Journal(d, "edge-test")
    try:
        reporter = Reporter(j, link, lambda b: None, interval_s=0.05)
        j.append(ok())
        j.roll()
        assert not asyncio.run(reporter.send_pending())
        assert len(files(d, "batch-")) == 1
        assert not asyncio.run(reporter.flush(timeout_s=1.0))
    finally:
        j.close()
    j = Journal(d, "edge-test")  # a restart: sent again, under the same id, and deleted
    try:
        link.fail_reports = False
        reporter = Reporter(j, link, lambda b: None, interval_s=0.05)
        assert asyncio.run(reporter.flush(timeout_s=1.0))
        assert not os.listdir(d) or files(d, "batch-") == []
        assert link.usage_totals()["requests"] == 1
    finally:
        j.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    d = tmp_path / "gw"
    j = Journal(d, "edge-test")
    j.append(ok())
    j.close()
    seg = files(d, "segment-")[0]
    with seg.open("a") as f:
        f.write('["k1","svc1","Sha')
    j = Journal(d, "edge-test")
    try:
        (batch,) = j.pending.values()
        assert batch.report.usage[0].requests == 1
    finally:
        j.close()


def test_a_segment_rolls_early_before_a_report_could_overflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import suanli.gateway.journal as journal

    monkeypatch.setattr(journal, "MAX_OUTCOMES", 3)
    j = Journal(tmp_path / "gw", "edge-test")
    try:
        for i in range(7):
            j.append(ok(key=f"k{i}"))
        assert [len(b.report.usage) for b in j.pending.values()] == [3, 3]
    finally:
        j.close()


def test_a_refused_batch_is_set_aside_and_does_not_block_the_rest(tmp_path: Path) -> None:
    from suanli.gateway.link import LinkError
    from suanli.gateway.protocol import GatewayReport, ReportAck

    class Refusing(FakeLink):
        async def report(self, report: GatewayReport) -> ReportAck:
            if report.usage[0].key_id == "bad":
                raise LinkError("HTTP 422: the report's window is not a time span", 422)
            return await super().report(report)

    d = tmp_path / "gw"
    link = Refusing(state([], []))
    refused: list[str] = []
    j = Journal(d, "edge-test")
    try:
        j.append(ok(key="bad"))
        j.roll()
        j.append(ok(key="good"))
        j.roll()
        reporter = Reporter(
            j, link, lambda b: None, 0.05, on_refused=lambda b: refused.append(b.batch_id)
        )
        assert asyncio.run(reporter.send_pending())
        assert not j.pending and len(refused) == 1 and len(link.reports) == 1
        assert [p.name.startswith("refused-batch-") for p in files(d, "refused-")] == [True]
        assert not files(d, "batch-")
    finally:
        j.close()
