"""``suanli bench gateway`` end to end, briefly: every process starts, the rows come out,
and the usage the stub exchange recorded is exactly what the gateway answered."""

from __future__ import annotations

import pytest

from suanli.bench.gateway import GatewayBenchSettings, run_gateway_bench


@pytest.mark.slow
def test_a_short_gateway_benchmark() -> None:
    result = run_gateway_bench(
        GatewayBenchSettings(rates=(40.0,), seconds=1.0, tokens=4, modes=("plain", "stream"))
    )
    assert [(r["mode"], r["rate"]) for r in result["rows"]] == [("plain", 40.0), ("stream", 40.0)]
    for row in result["rows"]:
        assert row["gateway_errors"] == 0 and row["gateway_p50_ms"] is not None
        assert row["metering_lag_p50_s"] is not None
    assert result["metering"]["exact"] and result["metering"]["answered"] == 80
