"""``suanli up``: start the exchange on embedded defaults (SQLite in the data directory,
the built-in catalogue, the first operator's token printed once) and a local site agent,
so a submitted job with a command really runs here as a local process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli._output import console
from suanli.errors import InvalidInput

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``suanli up`` to ``app``."""
    app.command("up")(up)


def up(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (loopback by default).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8000).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the SQLite database lives.")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="postgresql://… instead of SQLite in the data dir."),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the china-2025 fleet and a stream of sample work.")
    ] = False,
    clear_interval_s: Annotated[
        float | None, typer.Option("--clear-interval", help="Seconds between clearing rounds.")
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow binding a non-loopback address.")
    ] = False,
    dev: Annotated[
        bool, typer.Option("--dev", help="Development mode (relaxes safety checks).")
    ] = False,
    new_operator_token: Annotated[
        bool, typer.Option("--new-operator-token", help="Print a fresh operator token.")
    ] = False,
    duration_s: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.", hidden=True)
    ] = None,
    agent: Annotated[
        bool,
        typer.Option(
            "--agent/--no-agent", help="Run a local site agent (site `local`) beside the exchange."
        ),
    ] = True,
    local_reserve: Annotated[
        float | None,
        typer.Option(
            "--local-reserve",
            min=0.0,
            help="Reserve of the local site's pools, yuan/GPU-h (default 5; 40 with --demo).",
        ),
    ] = None,
    local_city: Annotated[
        str, typer.Option("--local-city", help="Catalogue city where the local site stands.")
    ] = "Shanghai",
    open_local_site: Annotated[
        bool,
        typer.Option(
            "--open-local-site",
            help="Let every buyer's work run on this machine's local site (sandboxed); by "
            "default it takes only the operator's own tenant's work.",
        ),
    ] = False,
    unsafe_no_sandbox: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-sandbox",
            help="Run the local site's work WITHOUT a sandbox, with the exchange's own "
            "rights (single-user machines only; shown to buyers).",
        ),
    ] = False,
) -> None:
    """Start the exchange: HTTP API, clearing loop, ledger, a local site agent. Ctrl-C
    stops it."""
    import uvicorn

    settings = _settings(
        {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "database_url": database_url,
            "clear_interval_s": clear_interval_s,
        },
        allow_remote=allow_remote,
        dev=dev,
        demo=demo,
    )
    from suanli.cli._data_dir import claim_data_dir

    # Checked and held before anything starts: an unusable or busy data dir is one clear
    # line and exit 2. It holds the SQLite file and the local agent's journal.
    uses_dir = settings.database_url is None or agent
    claim = claim_data_dir(settings.data_dir) if uses_dir else None
    try:
        app, rt, token = _open(settings)
    except InvalidInput:
        if claim is not None:
            claim.close()
        raise
    url = f"http://{settings.host}:{settings.port}"
    if token is None and new_operator_token:
        token = _fresh_operator_token(app)
    _announce(url, rt.db.dialect, _where(settings), token)
    driver = _demo_driver(rt, url) if demo else None
    console.print(f"OpenAPI: {url}/docs   metrics: {url}/metrics   Ctrl-C to stop")
    local = _LocalAgent(
        city=local_city,
        # ASSUMPTION: in the demo the local site asks more than the demo buyers bid
        # (lognormal around 11 yuan), so their simulated work stays on the simulated fleet.
        reserve=local_reserve if local_reserve is not None else (40.0 if demo else 5.0),
        open_to_all=open_local_site,
        sandbox=not unsafe_no_sandbox,
    )
    server = _server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"),
        on_started=(lambda: local.start(rt, url, settings.data_dir / "agent")) if agent else None,
        before_shutdown=local.stop,
    )
    if driver is not None:
        driver.start()
    if duration_s is not None:
        threading.Timer(duration_s, lambda: setattr(server, "should_exit", True)).start()
    try:
        server.run()
    finally:
        if driver is not None:
            driver.stop()
        if claim is not None:
            claim.close()


def _settings(given: dict[str, Any], *, allow_remote: bool, dev: bool, demo: bool) -> Any:
    """The service's settings from the options given (None: the default)."""
    from pydantic import ValidationError

    from suanli.service.settings import ServiceSettings

    overrides = {k: v for k, v in given.items() if v is not None}
    if allow_remote:
        overrides["allow_remote"] = True
    if dev:
        overrides["environment"] = "development"
    if demo and given.get("clear_interval_s") is None:
        overrides["clear_interval_s"] = 2.0
    try:
        settings = ServiceSettings(**overrides)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"invalid settings: {errs}") from None
    settings.check_safe()
    return settings


def _open(settings: Any) -> tuple[Any, Any, str | None]:
    """The app, its runtime and the first operator's token (None if one exists); a
    database that cannot be opened or migrated is ``InvalidInput`` saying why."""
    from sqlalchemy.exc import SQLAlchemyError

    from suanli.cli._data_dir import database_problem
    from suanli.service.app import bootstrap, create_app, runtime_of

    try:
        app = create_app(settings, on_round=_print_round)
        return app, runtime_of(app), bootstrap(app)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise database_problem(exc, _where(settings)) from None


def _print_round(summary: Any) -> None:
    if summary.round_id is None:
        return
    util = summary.gpus_allocated / summary.gpus_offered if summary.gpus_offered else 0.0
    console.print(
        f"round {summary.round_id}: {summary.pending_jobs} jobs and "
        f"{summary.pending_services} services waiting → placed {summary.jobs_placed} jobs, "
        f"{summary.services_placed} services ({summary.gpus_placed} GPUs) in "
        f"{summary.solve_s * 1000:.0f} ms; {summary.gpus_allocated:,} of "
        f"{summary.gpus_offered:,} GPUs busy ({util:.1%})",
        highlight=False,
    )


def _announce(url: str, dialect: str, where: str, token: str | None) -> None:
    console.print(f"[bold]suanli exchange[/] at {url}  (database: {dialect}, {where})")
    if token:
        console.print(
            "operator token (shown once, keep it):\n"
            f"  {token}\n"
            f"log in with:  suanli login --url {url} --token {token}",
            highlight=False,
        )
    else:
        console.print(
            "an operator exists already; use its token, or restart with --new-operator-token"
        )


def _demo_driver(rt: Any, url: str) -> Any:
    from suanli.service.demo import DemoDriver, setup_demo

    setup = setup_demo(rt)
    console.print(
        f"demo: {setup.fleet} fleet, {setup.sites} sites, {setup.pools} pools, "
        f"{setup.gpus:,} GPUs offered by demo-seller; 3 buyers submit work every few "
        "seconds; jobs finish 600× faster than real time"
    )
    return DemoDriver(url, setup)


@dataclass
class _LocalAgent:
    """The agent of the site ``local`` (this machine), started once the server listens
    and stopped while it still answers."""

    city: str
    reserve: float
    open_to_all: bool
    sandbox: bool
    running: list[Any] = field(default_factory=list)

    def start(self, rt: Any, url: str, state_dir: Path) -> None:
        from suanli.agent.embedded import start_embedded_agent
        from suanli.agent.sandbox import SandboxUnavailable
        from suanli.cli.agent_cmd import UNSAFE_BANNER
        from suanli.service.local_site import prepare_local_site

        if not self.sandbox:
            console.print(f"[bold red]{UNSAFE_BANNER}[/]", highlight=False)
        try:
            emb = start_embedded_agent(
                url,
                prepare_local_site(rt, self.city, open_to_all=self.open_to_all),
                state_dir,
                city=self.city,
                reserve_cny_per_gpu_hour=self.reserve,
                sandbox=self.sandbox,
            )
        except SandboxUnavailable as exc:
            console.print(f"[bold red]local site agent NOT started:[/] {exc}", highlight=False)
            return
        self.running.append(emb)
        who = "every buyer" if self.open_to_all else "the operator's own tenant only"
        console.print(
            f"local site agent: site `local` in {self.city}, pools offered at {self.reserve:g} "
            f"yuan/GPU-h to {who}; GPUs from NVML or {emb.inventory}",
            highlight=False,
        )

    def stop(self) -> None:
        for emb in self.running:
            emb.stop(cancel_running=True, timeout_s=5.0)


def _server(
    config: Any, *, on_started: Callable[[], None] | None, before_shutdown: Callable[[], None]
) -> Any:
    """A uvicorn server that starts the local agent once it listens and stops it while it
    still answers (so the agent's last reports reach the exchange)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if on_started is not None and self.started:
                await asyncio.to_thread(on_started)

        async def shutdown(self, sockets: Any = None) -> None:
            await asyncio.to_thread(before_shutdown)
            await super().shutdown(sockets=sockets)

    return Server(config)


def _where(settings: Any) -> str:
    return "URL given" if settings.database_url else str(settings.data_dir / "exchange.db")


def _fresh_operator_token(app: Any) -> str:
    from sqlalchemy import select

    from suanli.service.accounts import issue_token
    from suanli.service.app import runtime_of
    from suanli.service.tables import Account

    rt = runtime_of(app)

    def run(session: Any) -> str:
        acc = session.scalars(select(Account).where(Account.role == "operator")).first()
        return issue_token(session, acc.id, rt.clock.now(), "suanli up --new-operator-token")[1]

    return rt.db.transact(run)
