"""``suanli bench gateway``: the latency the inference gateway adds, measured against calling
the upstream directly in the same run, at rising request rates up to saturation.

Processes, all on 127.0.0.1:

- the upstream: the protocol-level **stand-in** (:mod:`suanli.engines.standin`, not an
  inference engine: made-up tokens after a fixed TTFT and TPOT, exact usage);
- a **stub exchange** (:mod:`suanli.bench._stub_exchange`): serves one static gateway
  state (the stand-in as the one replica of one service, one key) on the real long-poll
  path, and acknowledges usage reports, counting what they carry;
- the gateway: a real ``suanli gateway`` process fed by that stub;
- the load generator (:mod:`suanli.bench._loadgen`): its own process, open loop (requests
  leave on a fixed schedule whatever the answers do, so a slow target cannot slow the
  offered load), raw asyncio HTTP/1.1 with keep-alive — cheap enough to leave the CPU to
  the things measured.

For each rate and mode (streaming or not) the generator runs against the stand-in directly,
then through the gateway; the table shows both and the difference (p50, p99 of time to the
first body byte, which for a stream is the first token). A rate saturates when the gateway
delivers under 90 % of it, errs on more than 1 % or its p99 passes a second; higher rates
are skipped. The metering lag (request end → usage acknowledged by the exchange) comes
from the gateway's own histogram, and the usage the stub recorded is checked against the
requests the gateway answered.

This module holds the driver (starting the processes, the rates, the rows and notes). Its
``load`` and ``exchange`` subcommands hand over to the two helper modules:

    python -m suanli.bench.gateway load --url U --rate R --seconds S [--stream] --key K
    python -m suanli.bench.gateway exchange --port P --state FILE --token T
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from suanli.bench._loadgen import main as _load_main
from suanli.bench._loadgen import run_load
from suanli.bench._loopback import SUANLI, clean_env, free_port, stop_process, wait_for
from suanli.bench._stub_exchange import CITY, KEY, TOKEN, state_json, stub_totals
from suanli.bench._stub_exchange import main as _exchange_main

__all__ = ["GatewayBenchSettings", "run_gateway_bench"]


@dataclass(frozen=True, slots=True)
class GatewayBenchSettings:
    rates: tuple[float, ...] = (100.0, 250.0, 500.0, 750.0, 1000.0)
    seconds: float = 8.0
    tokens: int = 16  # output tokens per answer
    ttft_ms: float = 5.0  # the stand-in's
    tpot_ms: float = 1.0
    modes: tuple[str, ...] = ("plain", "stream")


# ----- orchestration ----------------------------------------------------------------------


@dataclass
class _Procs:
    upstream: str
    exchange: str
    gateway: str
    gateway_pid: int
    procs: list[subprocess.Popen[bytes]]


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=out, env=clean_env(), start_new_session=True
        )


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60.0, what)


def _start(tmp: Path, s: GatewayBenchSettings) -> _Procs:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_port, ex_port, gw_port = free_port(), free_port(), free_port()
        upstream = f"http://127.0.0.1:{up_port}"
        argv = [
            sys.executable,
            "-m",
            "suanli.engines.standin",
            "--port",
            str(up_port),
            "--ttft-ms",
            f"{s.ttft_ms:g}",
            "--tpot-ms",
            f"{s.tpot_ms:g}",
            "--cached-fraction",
            "0.5",
        ]
        procs.append(_spawn(argv, tmp / "standin.log"))
        _wait_http(upstream + "/health", procs[-1], tmp / "standin.log", "the stand-in")
        state_file = tmp / "state.json"
        state_file.write_text(state_json(upstream), encoding="utf-8")
        exchange = f"http://127.0.0.1:{ex_port}"
        argv = [
            sys.executable,
            "-m",
            "suanli.bench._stub_exchange",
            "--port",
            str(ex_port),
            "--state",
            str(state_file),
            "--token",
            TOKEN,
        ]
        procs.append(_spawn(argv, tmp / "exchange.log"))
        _wait_http(exchange + "/healthz", procs[-1], tmp / "exchange.log", "the stub exchange")
        token_file = tmp / "operator.token"
        token_file.write_text(TOKEN)
        gateway = f"http://127.0.0.1:{gw_port}"
        argv = [
            SUANLI,
            "gateway",
            "--exchange",
            exchange,
            "--city",
            CITY,
            "--port",
            str(gw_port),
            "--token-file",
            str(token_file),
            "--data-dir",
            str(tmp / "gateway-data"),
            "--log-level",
            "WARNING",
        ]
        procs.append(_spawn(argv, tmp / "gateway.log"))
        _wait_http(gateway + "/readyz", procs[-1], tmp / "gateway.log", "the gateway")
        return _Procs(upstream, exchange, gateway, procs[-1].pid, procs)
    except BaseException:
        for p in reversed(procs):
            stop_process(p)
        raise


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lag_buckets(gateway: str) -> dict[float, float]:
    text = httpx.get(gateway + "/metrics", timeout=5.0, trust_env=False).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("suanli_gateway_metering_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[math.inf if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def _bucket_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """A quantile from the difference of two cumulative histograms (linear in a bucket)."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    if not counts or counts[-1] <= 0:
        return None
    target, lower, below = q * counts[-1], 0.0, 0.0
    for edge, cum in zip(edges, counts, strict=True):
        if cum >= target:
            if math.isinf(edge):
                return lower
            share = (target - below) / (cum - below) if cum > below else 1.0
            return round(lower + (edge - lower) * share, 3)
        lower, below = edge, cum
    return None


def _row(
    mode: str,
    rate: float,
    direct: dict[str, Any],
    via: dict[str, Any],
    cpu_s: float,
    lag: tuple[float | None, float | None],
) -> dict[str, Any]:
    d, g = direct["first_ms"], via["first_ms"]

    def diff(q: str) -> float | None:
        return None if d[q] is None or g[q] is None else round(g[q] - d[q], 2)

    errors = via["sent"] - via["ok"]
    return {
        "mode": mode,
        "rate": rate,
        "direct_rps": direct["achieved_rps"],
        "gateway_rps": via["achieved_rps"],
        "direct_p50_ms": d["p50"],
        "gateway_p50_ms": g["p50"],
        "added_p50_ms": diff("p50"),
        "direct_p99_ms": d["p99"],
        "gateway_p99_ms": g["p99"],
        "added_p99_ms": diff("p99"),
        "p50_ratio": round(g["p50"] / d["p50"], 3) if d["p50"] and g["p50"] else None,
        "gateway_errors": errors,
        "gateway_cpu_ms_per_req": round(cpu_s * 1000.0 / max(1, via["ok"]), 3),
        "metering_lag_p50_s": lag[0],
        "metering_lag_p99_s": lag[1],
        "statuses": via["statuses"],
    }


def _saturated(rate: float, via: dict[str, Any]) -> bool:
    p99 = via["first_ms"]["p99"]
    return (
        via["achieved_rps"] < 0.9 * rate
        or via["sent"] - via["ok"] > 0.01 * via["sent"]
        or p99 is None
        or p99 > 1000.0
    )


def _measure_mode(p: _Procs, s: GatewayBenchSettings, mode: str) -> list[dict[str, Any]]:
    stream = mode == "stream"
    rows = []
    for rate in s.rates:
        direct = run_load(
            p.upstream + "/v1/chat/completions", rate, s.seconds, stream, s.tokens, None
        )
        lag_before, cpu_before = _lag_buckets(p.gateway), _cpu_s(p.gateway_pid)
        via = run_load(p.gateway + "/v1/chat/completions", rate, s.seconds, stream, s.tokens, KEY)
        cpu = _cpu_s(p.gateway_pid) - cpu_before
        time.sleep(2.5)  # the last requests' usage acknowledged (report interval 1 s)
        lag_after = _lag_buckets(p.gateway)
        lag = (
            _bucket_quantile(lag_before, lag_after, 0.5),
            _bucket_quantile(lag_before, lag_after, 0.99),
        )
        rows.append(_row(mode, rate, direct, via, cpu, lag))
        if _saturated(rate, via):
            rows[-1]["saturated"] = True
            break
    return rows


def run_gateway_bench(settings: GatewayBenchSettings | None = None) -> dict[str, Any]:
    """Run the benchmark; rows per mode × rate, notes, and the metering check."""
    s = settings or GatewayBenchSettings()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="suanli-bench-gw-") as tmp_name:
        p = _start(Path(tmp_name), s)
        try:
            for target, key in ((p.upstream, None), (p.gateway, KEY)):  # warm both paths up
                run_load(target + "/v1/chat/completions", 50.0, 1.0, False, s.tokens, key)
            time.sleep(2.5)  # the warm-up's usage acknowledged before counting starts
            ok_before = stub_totals(p.exchange)["requests"]
            rows: list[dict[str, Any]] = []
            answered = 0
            for mode in s.modes:
                for row in _measure_mode(p, s, mode):
                    answered += row["statuses"].get("200", 0)
                    rows.append(row)
            time.sleep(2.5)
            stub = stub_totals(p.exchange)
        finally:
            for proc in reversed(p.procs):
                stop_process(proc)
    metered = stub["requests"] - ok_before
    return {
        "settings": {
            "rates": list(s.rates),
            "seconds": s.seconds,
            "tokens": s.tokens,
            "ttft_ms": s.ttft_ms,
            "tpot_ms": s.tpot_ms,
        },
        "cpus": os.cpu_count(),
        "rows": rows,
        "metering": {
            "answered": answered,
            "metered": metered,
            "exact": metered == answered,
            "duplicate_batches": stub["duplicates"],
        },
        "notes": [
            "upstream: the protocol-level stand-in (suanli.engines.standin), NOT an inference "
            f"engine: TTFT {s.ttft_ms:g} ms, TPOT {s.tpot_ms:g} ms, {s.tokens} output tokens",
            "gateway: a real `suanli gateway` process fed by a stub exchange process serving a "
            "static state (one service, one replica: the stand-in) and acknowledging reports",
            "load: open loop from its own process (raw asyncio HTTP/1.1, keep-alive); latency "
            "is to the first body byte (streams: the first token) from the scheduled send time",
            _load_note(load_before[0], os.getloadavg()[0]),
        ],
    }


def _load_note(before: float, after: float) -> str:
    cpus = os.cpu_count() or 1
    busy = (
        "above the CPU count: other work was competing for them"
        if max(before, after) > cpus
        else "at or below the CPU count"
    )
    return (
        f"all processes share this machine's {cpus} CPUs; load average {before:.1f} before "
        f"the run, {after:.1f} after (1 min; {busy})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m suanli.bench.gateway load|exchange ...``: run the load generator or the
    stub exchange (the same as ``python -m suanli.bench._loadgen`` / ``._stub_exchange``)."""
    parser = argparse.ArgumentParser(prog="python -m suanli.bench.gateway")
    parser.add_argument("what", choices=("load", "exchange"))
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.what == "load":
        _load_main(args.rest)
    else:
        _exchange_main(args.rest)


if __name__ == "__main__":
    main()
