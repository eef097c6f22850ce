"""``suanli serve up|status|update|down``: inference services by name, SkyServe-style.

A service is named in its file; these commands find it by that name among your services
(or by its id), so an owner never copies ids around. ``status`` puts side by side what
the clearing planned for each demand city and what the gateways measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from suanli.cli._exchange import client
from suanli.cli._output import console, print_json, print_table
from suanli.errors import InvalidInput

__all__ = ["find_service", "register", "service_costs"]

serve_app = typer.Typer(
    help="Inference services by name: up (submit a service file), status, update, down.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")


def find_service(c: Any, name: str) -> dict[str, Any]:
    """Your service called ``name`` (or with that id): the active one if there is one,
    else the newest; InvalidInput naming your services when there is none."""
    services: list[dict[str, Any]] = c.services(limit=1000)
    hits = [s for s in services if s["id"] == name] or [s for s in services if s["name"] == name]
    live = [s for s in hits if s["state"] == "active"]
    if len(live) > 1:
        ids = ", ".join(s["id"] for s in live)
        raise InvalidInput(f"{len(live)} active services are named {name!r} ({ids}): give an id")
    if live or hits:
        return (live or hits)[0]
    names = sorted({s["name"] for s in services if s["state"] == "active"})
    yours = ", ".join(names) if names else "none active; start one with `suanli serve up FILE`"
    raise InvalidInput(f"no service named {name!r}; your services: {yours}")


def service_costs(c: Any, now: datetime | None = None) -> dict[str, float]:
    """Yuan per service so far: its settled GPU time plus the part of each running
    replica's hold that has elapsed (replicas are billed per GPU-hour at pool prices)."""
    now = now or datetime.now(UTC)
    out: dict[str, float] = {}
    for u in c.usage(limit=1000):
        if u["kind"] == "replica":
            out[u["item_id"]] = out.get(u["item_id"], 0.0) + _yuan(u)
    for a in c.allocations(active=True, limit=1000):
        if a["kind"] != "replica" or a["planned_h"] <= 0:
            continue
        since = datetime.fromisoformat(a["started_at"] or a["placed_at"])
        done = max(0.0, min(1.0, (now - since).total_seconds() / 3600 / a["planned_h"]))
        out[a["item_id"]] = out.get(a["item_id"], 0.0) + done * _yuan(a)
    return out


def _yuan(row: Mapping[str, Any]) -> float:
    return (int(row["buyer_fen"]) + int(row["voucher_fen"])) / 100


def _pct(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:.1f}%"


# ----- up ---------------------------------------------------------------------------------
@serve_app.command("up")
def up(
    path: Annotated[Path, typer.Argument(help="service.yaml (or .json), kind: service.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Submit a service file; the next clearing round places its replicas.

    Example: suanli serve up chat.yaml
    """
    from suanli.cli._spec_file import read_spec_file
    from suanli.sdk import ApiError

    spec = read_spec_file(path)
    kind = spec.get("kind") or ("service" if "model" in spec else "job")
    if kind != "service":
        raise InvalidInput(
            f"{path}: a {kind!s:.20} file; `suanli serve up` takes a service file "
            "(kind: service) — submit jobs with `suanli submit`"
        )
    with client() as c:
        _refuse_a_second(c, spec.get("name"))
        try:
            out = c.submit_service(spec)
        except ApiError as exc:
            raise InvalidInput(f"{path}: {exc}") from None
    if as_json:
        print_json(out)
        return
    console.print(
        f"service {out['name']} ({out['id']}) is up: {out['state']}. Watch it with "
        f"`suanli serve status {out['name']}`; give its users keys with "
        f"`suanli keys create --service {out['name']} --name app-1`.",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _refuse_a_second(c: Any, name: object) -> None:
    """Names are how these commands find a service: a second active one of the same name
    would make them ambiguous, and is usually a mistake for ``serve update``."""
    same = [s for s in c.services(state="active", limit=1000) if s["name"] == name]
    if same:
        raise InvalidInput(
            f"a service named {name!r} is already up ({same[0]['id']}): change it with "
            f"`suanli serve update {name}`, or stop it first with `suanli serve down {name}`"
        )


# ----- status -----------------------------------------------------------------------------
def _planned(s: Mapping[str, Any]) -> float:
    return float(sum((s.get("planned_demand_rps") or s["demand_rps"]).values()))


def _summary_row(s: dict[str, Any], traffic: dict[str, Any] | None, cost: float) -> dict[str, Any]:
    total = (traffic or {}).get("total") or {}
    cities = sorted(s["demand_rps"])
    return {
        "name": s["name"],
        "id": s["id"],
        "state": s["state"],
        "replicas": len(s["replicas"]),
        "cities": ", ".join(cities[:4]) + (f" +{len(cities) - 4}" if len(cities) > 4 else ""),
        "planned": _planned(s),
        "measured": total.get("rps"),
        "slo": _pct(total.get("slo_attainment")),
        "tokens": (total.get("prompt_tokens", 0) + total.get("output_tokens", 0))
        if total
        else None,
        "cost": round(cost, 2),
    }


@serve_app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="A service's name (or id).")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Stopped services too.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Your services, or one service in detail.

    Replicas (where they serve from, health), per demand city the planned and measured
    requests/s and SLO attainment, tokens of the last hour, cost so far.

    Example: suanli serve status chat
    """
    with client() as c:
        if name is not None:
            _status_one(c, name, as_json)
            return
        services = c.services(state=None if show_all else "active", limit=1000)
        traffic = {s["id"]: c.service_traffic(s["id"]) for s in services}
        costs = service_costs(c)
    rows = [_summary_row(s, traffic.get(s["id"]), costs.get(s["id"], 0.0)) for s in services]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no services; start one with `suanli serve up service.yaml`", markup=False)
        return
    print_table(
        rows,
        ["name", "state", "replicas", "cities", "planned", "measured", "slo", "tokens", "cost"],
        title="services (last hour)",
        headers={
            "planned": "planned req/s",
            "measured": "measured req/s",
            "slo": "SLO met",
            "tokens": "tokens",
            "cost": "cost yuan",
        },
    )


def _status_one(c: Any, name: str, as_json: bool) -> None:
    s = find_service(c, name)
    traffic = c.service_traffic(s["id"])
    cost = service_costs(c).get(s["id"], 0.0)
    if as_json:
        print_json({"service": s, "traffic": traffic, "cost_cny": round(cost, 2)})
        return
    head = f"({s['id']}) — {s['state']}: {s['reason']}; model {s['model']}, "
    head += f"SLO TTFT {s['ttft_ms']:g} ms / TPOT {s['tpot_ms']:g} ms"
    console.print(f"[bold]{escape(s['name'])}[/] {escape(head)}", highlight=False, soft_wrap=True)
    replicas = traffic["replicas"]
    if replicas:
        print_table(
            replicas,
            ["pool_id", "site_id", "city", "gpus", "endpoint", "health"],
            title="replicas",
            headers={"pool_id": "pool", "site_id": "site"},
        )
    else:
        console.print("no replicas running", highlight=False, markup=False)
    _city_table(traffic["cities"], s)
    t = traffic["total"]
    console.print(
        f"last {traffic['minutes']} min: {t['requests']:,} requests, "
        f"{t['prompt_tokens']:,} prompt tokens ({t['cached_tokens']:,} cached), "
        f"{t['output_tokens']:,} output tokens; SLO met {_pct(t['slo_attainment']) or '—'}; "
        f"{t['rejected']:,} rejected (429). Cost so far: {cost:,.2f} yuan.",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _city_table(cities: Sequence[Mapping[str, Any]], s: Mapping[str, Any]) -> None:
    measured = s.get("measured_rps") or {}
    rows = [
        {
            "city": t["city"],
            "planned": t["planned_rps"],
            "declared": s["demand_rps"].get(t["city"]),
            "measured": t["rps"],
            "estimate": measured.get(t["city"]),
            "requests": t["requests"],
            "slo": _pct(t["slo_attainment"]),
            "prompt": t["prompt_tokens"],
            "output": t["output_tokens"],
            "rejected": t["rejected"],
        }
        for t in cities
    ]
    cols = ["city", "declared", "planned", "measured", "estimate", "requests", "slo"]
    print_table(
        rows,
        [*cols, "prompt", "output", "rejected"],
        title="demand per city (req/s)",
        headers={
            "measured": "measured (window)",
            "estimate": "measured (smoothed)",
            "slo": "SLO met",
            "prompt": "prompt tok",
            "output": "output tok",
            "rejected": "429s",
        },
    )


# ----- update, down -----------------------------------------------------------------------
def _demand(current: Mapping[str, float], given: Sequence[str]) -> dict[str, float]:
    """The current demand with each ``CITY=RPS`` set (a city matched without regard to
    case, so that ``shanghai=5`` replaces ``Shanghai`` rather than adding to it)."""
    out = dict(current)
    for item in given:
        city, sep, value = item.partition("=")
        try:
            rps = float(value)
        except ValueError:
            rps = float("nan")
        if not sep or not city.strip() or not (0 <= rps <= 1e6):
            raise InvalidInput(f"--demand {item!r}: give CITY=RPS, e.g. Shanghai=40 (0 to 1e6)")
        same = [k for k in out if k.lower() == city.strip().lower()]
        for k in same:
            del out[k]
        out[same[0] if same else city.strip()] = rps
    return out


def _patch(s: Mapping[str, Any], opts: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if opts["demand"]:
        patch["demand_rps"] = _demand(s["demand_rps"], opts["demand"])
    for opt, field in (
        ("bid_input", "bid_cny_per_m_input_tokens"),
        ("bid_cached_input", "bid_cny_per_m_cached_input_tokens"),
        ("bid_output", "bid_cny_per_m_output_tokens"),
    ):
        if opts[opt] is not None:
            patch[field] = opts[opt]
    if opts["ttft_ms"] is not None or opts["tpot_ms"] is not None:
        patch["slo"] = {
            "ttft_ms": opts["ttft_ms"] if opts["ttft_ms"] is not None else s["ttft_ms"],
            "tpot_ms": opts["tpot_ms"] if opts["tpot_ms"] is not None else s["tpot_ms"],
        }
    if opts["min_replicas"] is not None or opts["max_replicas"] is not None:
        lo, hi = opts["min_replicas"], opts["max_replicas"]
        patch["replicas"] = {
            "min": lo if lo is not None else s.get("min_replicas", 0),
            "max": hi if hi is not None else s.get("max_replicas"),
        }
    if not patch:
        raise InvalidInput(
            "nothing to update: give --demand CITY=RPS, --bid-input/--bid-cached-input/"
            "--bid-output, --ttft-ms/--tpot-ms or --min-replicas/--max-replicas"
        )
    return patch


def _bid(flag: str, what: str) -> Any:
    return typer.Option(flag, min=0, max=100_000, help=f"Yuan per million {what} tokens.")


@serve_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="A service's name (or id).")],
    demand: Annotated[
        list[str] | None,
        typer.Option("--demand", help="CITY=RPS (repeat); other cities keep their demand."),
    ] = None,
    bid_input: Annotated[float | None, _bid("--bid-input", "input")] = None,
    bid_cached_input: Annotated[float | None, _bid("--bid-cached-input", "cached input")] = None,
    bid_output: Annotated[float | None, _bid("--bid-output", "output")] = None,
    ttft_ms: Annotated[
        float | None,
        typer.Option("--ttft-ms", min=0.001, max=600_000, help="SLO: time to first token."),
    ] = None,
    tpot_ms: Annotated[
        float | None,
        typer.Option("--tpot-ms", min=0.001, max=60_000, help="SLO: time per output token."),
    ] = None,
    min_replicas: Annotated[
        int | None, typer.Option("--min-replicas", min=0, max=10_000, help="Keep at least N.")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option("--max-replicas", min=1, max=10_000, help="Place at most N.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Change a running service's demand, bids, SLO or replica bounds.

    Options left out keep their value; the next clearing round plans with the new ones.

    Example: suanli serve update chat --demand Shanghai=40 --bid-output 12 --max-replicas 4
    """
    opts = {
        "demand": demand,
        "bid_input": bid_input,
        "bid_cached_input": bid_cached_input,
        "bid_output": bid_output,
        "ttft_ms": ttft_ms,
        "tpot_ms": tpot_ms,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
    }
    with client() as c:
        s = find_service(c, name)
        out = c.update_service(s["id"], _patch(s, opts))
    if as_json:
        print_json(out)
        return
    demand_now = ", ".join(f"{k}={v:g}" for k, v in sorted(out["demand_rps"].items()))
    console.print(
        f"updated {out['name']} ({out['id']}): demand {demand_now} req/s, bids "
        f"{out.get('bid_cny_per_m_input_tokens', 0):g}/"
        f"{out.get('bid_cny_per_m_cached_input_tokens', 0):g}/"
        f"{out['bid_cny_per_m_output_tokens']:g} yuan per M input/cached/output tokens, "
        f"SLO {out['ttft_ms']:g}/{out['tpot_ms']:g} ms; the next round plans with it.",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@serve_app.command("down")
def down(
    name: Annotated[str, typer.Argument(help="A service's name (or id).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stop a service and free its replicas.

    Its replicas are billed for the time they ran; its keys stop working with it.

    Example: suanli serve down chat
    """
    with client() as c:
        s = find_service(c, name)
        if s["state"] != "active":
            raise InvalidInput(f"service {s['name']} ({s['id']}) is already {s['state']}")
        out = c.stop_service(s["id"])
    if as_json:
        print_json(out)
        return
    console.print(
        f"service {out['name']} ({out['id']}): {out['state']} — replicas billed for the time "
        "they ran, then freed",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
