"""``suanli bench agents`` end to end on a few jobs: every figure is measured, the books
balance (the 1,000-job run is the benchmark's own, not a test)."""

from __future__ import annotations

import pytest

from suanli.bench.agents import run_agents_bench

pytestmark = [
    pytest.mark.slow,  # end to end: real `suanli` processes
    pytest.mark.requires("bwrap"),  # local work runs sandboxed
]


def test_bench_agents_measures_the_local_backend() -> None:
    result = run_agents_bench(jobs=12)
    [row] = result["rows"]
    assert (row["backend"], row["jobs"], row["succeeded"]) == ("local", 12, 12)
    for key in (
        "place_to_running_p50_s",
        "place_to_start_p50_s",
        "exit_to_ledger_p50_s",
        "agent_cpu_ms_per_job",
        "agent_peak_rss_mb",
    ):
        assert row[key] is not None and row[key] >= 0, key
    # The backend starts a job after it was placed, and the exchange hears of it later.
    assert row["place_to_start_p50_s"] <= row["place_to_running_p50_s"]
    assert "ledger audit: balanced" in result["notes"]
    assert "slurm: not measured (give --slurm-conf)" in result["notes"]
