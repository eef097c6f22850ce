"""``suanli submit``, ``status``, ``cancel``, ``why``: buyers' work on a running exchange."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli._exchange import client
from suanli.cli._output import console, print_json, print_table
from suanli.errors import InvalidInput

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("cancel")(cancel)
    app.command("why")(why)


def submit(
    path: Annotated[Path, typer.Argument(help="job.yaml or service.yaml (or .json).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Submit a job or a service file; it is placed by the next clearing round."""
    from suanli.cli._spec_file import read_spec_file

    spec = read_spec_file(path)  # refuses alias bombs, huge files and NaN before sending
    with client() as c:
        try:
            out = c.submit(spec)
        except Exception as exc:
            from suanli.sdk import ApiError

            if isinstance(exc, ApiError):
                raise InvalidInput(f"{path}: {exc}") from None
            raise
    if as_json:
        print_json(out)
        return
    kind = "service" if out["id"].startswith("svc-") else "job"
    console.print(
        f"submitted {kind} {out['id']} ({out['name']}): {out['state']}. "
        f"Follow it with `suanli status {out['id']}` or `suanli why {out['id']}`.",
        highlight=False,
    )


def _job_row(j: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": j["id"],
        "name": j["name"],
        "state": j["state"],
        "gpus": j["gpus"],
        "work": j["work_ref_gpu_hours"],
        "bid": j["bid_cny_per_ref_gpu_hour"],
        "pool": j["pool_id"],
        "submitted": j["submitted_at"][:19],
    }


def _service_row(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": s["id"],
        "name": s["name"],
        "state": s["state"],
        "model": s["model"],
        "demand": sum(s["demand_rps"].values()),
        "served": s["served_rps"],
        "replicas": len(s["replicas"]),
    }


def status(
    item_id: Annotated[str | None, typer.Argument(help="A job or service id.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Your jobs and services, or one of them."""
    with client() as c:
        if item_id is not None:
            item = c.get(item_id)
            if as_json:
                print_json(item)
                return
            row = _service_row(item) if item_id.startswith("svc-") else _job_row(item)
            print_table([row], list(row))
            console.print(f"reason: {item['reason']}", highlight=False)
            return
        jobs = c.jobs(state=state, limit=limit)
        services = c.services(limit=limit) if state is None else []
    if as_json:
        print_json({"jobs": jobs, "services": services})
        return
    print_table(
        [_job_row(j) for j in jobs],
        ["id", "name", "state", "gpus", "work", "bid", "pool", "submitted"],
        title="jobs",
        headers={"work": "work ref GPU-h", "bid": "bid yuan/ref GPU-h"},
    )
    if services:
        print_table(
            [_service_row(s) for s in services],
            ["id", "name", "state", "model", "demand", "served", "replicas"],
            title="services",
            headers={"demand": "demand req/s", "served": "served req/s"},
        )


def cancel(
    item_id: Annotated[str, typer.Argument(help="A job id (cancel) or service id (stop).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a job or stop a service; delivered GPU time is billed, the rest released."""
    with client() as c:
        out = c.cancel(item_id)
    if as_json:
        print_json(out)
        return
    console.print(f"{out['id']}: {out['state']} ({out['reason']})", highlight=False)


def why(
    item_id: Annotated[str, typer.Argument(help="A job or service id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Why work is pending (the engine's reasons), or where and why it was placed."""
    with client() as c:
        out = c.why(item_id)
    if as_json:
        print_json(out)
        return
    console.print(f"[bold]{out['id']}[/] — {out['summary']}", highlight=False)
    for r in out["reasons"]:
        console.print(f"  • {r}", highlight=False)
    if out["placements"]:
        print_table(
            out["placements"],
            [
                "pool_id",
                "gpu",
                "gpus",
                "price_cny_per_gpu_hour",
                "planned_h",
                "held_buyer_fen",
                "active",
            ],
            title="placements",
            headers={"price_cny_per_gpu_hour": "price yuan/GPU-h", "held_buyer_fen": "held fen"},
        )
    print_table(
        [
            {
                "at": e["at"][:19],
                "change": f"{e['from_state'] or ''} → {e['to_state'] or e['kind']}",
                "reason": e["reason"],
            }
            for e in out["events"]
        ],
        ["at", "change", "reason"],
        title="history",
    )
