"""The explicit registry of CLI command modules (each exposes ``register(app)``)."""

from __future__ import annotations

from collections.abc import Callable

import typer

from suanli.cli import (
    account_cmd,
    agent_cmd,
    bench_cmd,
    catalog_cmd,
    clear_cmd,
    demo_cmd,
    gateway_cmd,
    keys_cmd,
    latency_cmd,
    market_cmd,
    perf_cmd,
    serve_cmd,
    simulate_cmd,
    up_cmd,
    usage_cmd,
    work_cmd,
)

REGISTRY: list[Callable[[typer.Typer], None]] = [
    demo_cmd.register,
    catalog_cmd.register,
    perf_cmd.register,
    latency_cmd.register,
    clear_cmd.register,
    bench_cmd.register,
    up_cmd.register,
    account_cmd.register,
    work_cmd.register,
    market_cmd.register,
    simulate_cmd.register,
    agent_cmd.register,
    serve_cmd.register,
    keys_cmd.register,
    usage_cmd.register,
    gateway_cmd.register,
]
