"""``suanli perf``: the roofline performance model from the command line.

- ``suanli perf service --model M --gpu G`` — tensor-parallel degree, replica capacity
  under TTFT/TPOT SLOs, tokens/s, and which bound binds.
- ``suanli perf validate`` — the model's predictions against published serving figures.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from suanli.catalog import accelerator, load_catalog, model
from suanli.cli._output import print_json, print_table, to_jsonable
from suanli.errors import InvalidInput
from suanli.perf import efficiency
from suanli.perf.capacity import LatencySLO, ReplicaCapacity, TokenProfile, replica_capacity
from suanli.perf.inference import (
    TP_DEGREES,
    kv_bytes_per_token,
    min_tp,
    peak_flops,
    uses_fp8,
    weights_bytes,
)
from suanli.perf.validate import ValidationRow, load_published_figures, validate

__all__ = ["perf_app", "register"]

perf_app = typer.Typer(
    name="perf",
    help="Roofline performance model: replica capacity and validation.",
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print JSON.")

DEFAULT_PROMPT_TOKENS = 1024.0
DEFAULT_OUTPUT_TOKENS = 256.0
# MLPerf Inference "server" SLOs for llama3.1-8b (DESIGN.md): TTFT 2000 ms, TPOT 100 ms.
DEFAULT_TTFT_MS = 2000.0
DEFAULT_TPOT_MS = 100.0


def register(app: typer.Typer) -> None:
    """Add ``suanli perf`` and its sub-commands to ``app``."""
    app.add_typer(perf_app, name="perf")


def _positive(option: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(f"{option} must be a positive number, got {value:g}")
    return value


@perf_app.command("service")
def service(
    model_name: Annotated[str, typer.Option("--model", help="Model name or alias.")],
    gpu_name: Annotated[str, typer.Option("--gpu", help="Accelerator name or alias.")],
    prompt_tokens: Annotated[
        float, typer.Option("--prompt-tokens", help="Mean prompt tokens per request.")
    ] = DEFAULT_PROMPT_TOKENS,
    output_tokens: Annotated[
        float, typer.Option("--output-tokens", help="Mean output tokens per request.")
    ] = DEFAULT_OUTPUT_TOKENS,
    ttft_ms: Annotated[
        float, typer.Option("--ttft-ms", help="Time-to-first-token SLO in ms.")
    ] = DEFAULT_TTFT_MS,
    tpot_ms: Annotated[
        float, typer.Option("--tpot-ms", help="Time-per-output-token SLO in ms.")
    ] = DEFAULT_TPOT_MS,
    tp: Annotated[
        int | None,
        typer.Option("--tp", help="Tensor-parallel degree (default: smallest that works)."),
    ] = None,
    as_json: bool = _JSON,
) -> None:
    """Capacity of one replica of a model on a GPU type, and which bound binds."""
    profile = TokenProfile(
        _positive("--prompt-tokens", prompt_tokens), _positive("--output-tokens", output_tokens)
    )
    slo = LatencySLO(_positive("--ttft-ms", ttft_ms), _positive("--tpot-ms", tpot_ms))
    if tp is not None and tp not in TP_DEGREES:
        raise InvalidInput(f"--tp must be one of {', '.join(map(str, TP_DEGREES))}, got {tp}")
    cat = load_catalog()
    m = model(cat, model_name)
    g = accelerator(cat, gpu_name)
    cap = replica_capacity(m, g, profile, slo, tp)
    facts: dict[str, Any] = {
        "weights_gb": weights_bytes(m) / 1e9,
        "kv_bytes_per_token": kv_bytes_per_token(m),
        "precision": "FP8" if uses_fp8(m, g) else "BF16",
        "peak_tflops_per_gpu": peak_flops(m, g) / 1e12,
        "min_tp": min_tp(m, g),
    }
    if as_json:
        print_json(
            {
                **to_jsonable(cap),
                "prompt_tokens": profile.prompt_tokens,
                "output_tokens": profile.output_tokens,
                "slo_ttft_ms": slo.ttft_ms,
                "slo_tpot_ms": slo.tpot_ms,
                "requests_per_s_per_gpu": cap.requests_per_s_per_gpu,
                **facts,
            }
        )
        return
    _print_service(cap, profile, slo, facts)


def _print_service(
    cap: ReplicaCapacity, profile: TokenProfile, slo: LatencySLO, facts: dict[str, Any]
) -> None:
    gpus = f"{cap.gpus} GPU{'s' if cap.gpus > 1 else ''}"
    typer.echo(f"{cap.model} on {cap.gpu}: TP{cap.tp} ({gpus} per replica)")
    typer.echo(
        f"profile: {profile.prompt_tokens:,.0f} prompt + {profile.output_tokens:,.0f} output "
        f"tokens; SLO TTFT {slo.ttft_ms:,.0f} ms, TPOT {slo.tpot_ms:,.0f} ms"
    )
    if cap.feasible:
        typer.echo(
            f"capacity: {cap.requests_per_s:,.2f} req/s per replica "
            f"({cap.requests_per_s_per_gpu:,.2f} per GPU); "
            f"{cap.output_tokens_per_s:,.0f} output tok/s, "
            f"{cap.input_tokens_per_s:,.0f} input tok/s"
        )
        typer.echo(
            f"operating point: batch {cap.batch:,}, TTFT (prefill) {cap.ttft_ms:,.1f} ms, "
            f"TPOT {cap.tpot_ms:,.1f} ms"
        )
    else:
        typer.echo("capacity: 0 req/s (infeasible)")
    typer.echo(f"binding: {cap.binding.value} — {cap.reason}")
    min_text = facts["min_tp"] if facts["min_tp"] is not None else "none (does not fit)"
    typer.echo(
        f"model: weights {facts['weights_gb']:,.1f} GB, KV {facts['kv_bytes_per_token']:,.0f} "
        f"bytes/token, {facts['precision']} peak {facts['peak_tflops_per_gpu']:,.0f} "
        f"TFLOPS/GPU; smallest fitting TP {min_text}"
    )


def _constants() -> str:
    return (
        f"MFU_PREFILL {efficiency.MFU_PREFILL}, MBU_DECODE {efficiency.MBU_DECODE}, "
        f"MEMORY_RESERVE_FRACTION {efficiency.MEMORY_RESERVE_FRACTION}, "
        f"TP_COMM_OVERHEAD_PER_DOUBLING {efficiency.TP_COMM_OVERHEAD_PER_DOUBLING}"
    )


@perf_app.command("validate")
def validate_cmd(as_json: bool = _JSON) -> None:
    """Predictions of the performance model against published serving figures."""
    cat = load_catalog()
    rows = validate(
        load_published_figures(),
        lambda name: model(cat, name),
        lambda name: accelerator(cat, name),
    )
    if as_json:
        print_json({"constants": _constants(), "rows": rows})
        return
    _print_validation(rows)


def _print_validation(rows: tuple[ValidationRow, ...]) -> None:
    table = [
        {
            "n": str(i),
            "model": r.model,
            "gpu": r.gpu,
            "setup": r.setup,
            "predicted": r.predicted,
            "published": r.published,
            "unit": r.unit,
            "error": f"{r.error_pct:+.1f}%",
        }
        for i, r in enumerate(rows, start=1)
    ]
    print_table(
        table,
        ["n", "model", "gpu", "setup", "predicted", "published", "unit", "error"],
        title="Performance model vs published figures (error = predicted / published − 1)",
    )
    typer.echo(f"constants: {_constants()}")
    for i, r in enumerate(rows, start=1):
        typer.echo(f"[{i}] {r.id}: {r.source}")
        typer.echo(f"    {r.note}")
