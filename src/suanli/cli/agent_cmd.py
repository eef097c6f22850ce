"""``suanli agent``: run a site agent next to a cluster.

    suanli agent --exchange http://exchange:8000 --token sl_… --backend slurm \\
        --site zw-dc1 --city Yinchuan --reserve 9.5 \\
        --backend-opt slurm_conf=/etc/slurm/slurm.conf

It registers the pools the backend finds (NVML or ``--inventory`` for ``local``, GRES for
``slurm``, resources for ``ray``), heartbeats, leases the work placed on them (it only
calls out: a site behind NAT works), runs it and reports back. Ctrl-C (or TERM) stops the
agent and leaves Slurm and Ray work running for the next agent to pick up; with
``--cancel-on-exit`` the work is stopped and placed again elsewhere. ``local`` work never
outlives its agent: it is stopped and reported at exit, and dies with an agent that is
killed.

The ``local`` backend runs every job in a sandbox (``suanli.agent.sandbox``: bubblewrap,
its own unprivileged user, limits); an agent that cannot set one up refuses to start and
says how to fix it. ``--unsafe-no-sandbox`` runs buyers' work with the agent's own rights
instead — for a single-user host only; it is logged at start and shown to the exchange.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.errors import InvalidInput

__all__ = ["UNSAFE_BANNER", "default_state_dir", "register"]


def register(app: typer.Typer) -> None:
    """Add ``suanli agent`` to ``app``."""
    app.command("agent")(agent)


def default_state_dir(site_id: str) -> Path:
    """``$XDG_DATA_HOME/suanli/agents/<site>`` (or under ``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "suanli" / "agents" / site_id


UNSAFE_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! --unsafe-no-sandbox: buyers' work runs WITHOUT a sandbox, as this agent's own\n"
    "!! user, and can read and change everything this user can (tokens, databases).\n"
    "!! Use it only on a host that serves no one else; the exchange shows it to buyers.\n"
    + "!"
    * 78
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "site"


def _backend_config(
    backend: str, runs_dir: Path, inventory: Path | None, config: Path | None, opts: list[str]
) -> dict[str, Any]:
    """The backend's settings: the config file, then ``--backend-opt``s, then flags."""
    import yaml

    cfg: dict[str, Any] = {"runs_dir": str(runs_dir)}
    if config is not None:
        try:
            doc = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read backend config {config}: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidInput(f"backend config {config}: expected a mapping of settings")
        cfg.update(doc)
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--backend-opt {opt!r}: expected KEY=VALUE")
        cfg[key.strip()] = value
    if inventory is not None:
        if backend != "local":
            raise InvalidInput("--inventory is for the local backend (Slurm and Ray find GPUs)")
        cfg["inventory"] = str(inventory)
    return cfg


def agent(
    exchange: Annotated[
        str, typer.Option("--exchange", envvar="SUANLI_URL", help="The exchange's URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="SUANLI_TOKEN", help="A seller token of the site's owner."),
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="local, slurm or ray.")] = "local",
    site: Annotated[
        str | None, typer.Option("--site", help="Site id (default: <host>-<backend>).")
    ] = None,
    city: Annotated[
        str | None, typer.Option("--city", help="Catalogue city of a new site (creates it).")
    ] = None,
    site_name: Annotated[
        str | None, typer.Option("--site-name", help="Display name of a new site.")
    ] = None,
    reserve: Annotated[
        float | None,
        typer.Option("--reserve", help="Offer new pools at this reserve (yuan per GPU-hour)."),
    ] = None,
    inventory: Annotated[
        Path | None, typer.Option("--inventory", help="GPU inventory YAML (local backend).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Backend settings YAML (a mapping).")
    ] = None,
    backend_opt: Annotated[
        list[str] | None,
        typer.Option("--backend-opt", help="A backend setting KEY=VALUE (repeatable)."),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Journal and run folders.")
    ] = None,
    runs_dir: Annotated[
        Path | None, typer.Option("--runs-dir", help="Run folders (default: STATE_DIR/runs).")
    ] = None,
    advertise_host: Annotated[
        str, typer.Option("--advertise-host", help="Host in replicas' endpoints.")
    ] = "127.0.0.1",
    poll_interval_s: Annotated[
        float, typer.Option("--poll-interval", min=0.01, help="Seconds between polls.")
    ] = 0.5,
    lease_interval_s: Annotated[
        float, typer.Option("--lease-interval", min=0.01, help="Seconds between leases.")
    ] = 1.0,
    cancel_on_exit: Annotated[
        bool, typer.Option("--cancel-on-exit", help="Stop held work when the agent stops.")
    ] = False,
    unsafe_no_sandbox: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-sandbox",
            help="local backend: run buyers' work WITHOUT a sandbox, with this agent's own "
            "rights (single-user hosts only; shown to the exchange).",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="Logging level.")] = "INFO",
) -> None:
    """Run a site agent: register the site's pools, run the work placed on them."""
    from suanli.agent import create_backend, default_registry
    from suanli.agent.exchange import ExchangeLink
    from suanli.agent.runner import AgentRunner, AgentSettings
    from suanli.sdk import Client

    if not token:
        raise InvalidInput("give a seller token: --token or SUANLI_TOKEN")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per HTTP call would drown the agent's own story.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    site_id = site or f"{_slug(socket.gethostname())}-{backend}"
    state = state_dir or default_state_dir(site_id)
    cfg = _backend_config(backend, runs_dir or state / "runs", inventory, config, backend_opt or [])
    if unsafe_no_sandbox:
        if backend != "local":
            raise InvalidInput("--unsafe-no-sandbox is for the local backend")
        cfg["sandbox"] = {**cfg.get("sandbox", {}), "enabled": False}
        logging.getLogger("suanli.agent").warning(UNSAFE_BANNER)
    be = create_backend(default_registry(), backend, cfg)
    settings = AgentSettings(
        site_id=site_id,
        state_dir=state,
        city=city,
        site_name=site_name,
        reserve_cny_per_gpu_hour=reserve,
        advertise_host=advertise_host,
        poll_interval_s=poll_interval_s,
        lease_interval_s=lease_interval_s,
    )
    client = Client(exchange, token, retries=2, timeout_s=30.0)
    runner = AgentRunner(be, ExchangeLink(client, site_id), settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("suanli.agent").info(
        "agent for site %s: %s backend, exchange %s, state in %s", site_id, backend, exchange, state
    )
    try:
        runner.run(stop)
    finally:
        # Local work dies with this process: stop it and say so while the exchange listens.
        runner.shutdown(cancel_running=cancel_on_exit or backend == "local")
        be.close()
        client.close()
