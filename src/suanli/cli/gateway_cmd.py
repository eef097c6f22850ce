"""``suanli gateway``: run an inference gateway near users.

    suanli gateway --exchange http://exchange:8000 --city Shanghai --token-file op.token

It long-polls the exchange for the services, their replicas, the routing plan and the
inference keys, serves the OpenAI API (``/v1/chat/completions``, ``/v1/completions``,
``/v1/models``) to the services' users, sends each request to the replica the market
placed for the gateway's city, and reports the metered usage and the measured demand back
(journaled in ``--data-dir`` first, so nothing is lost or counted twice across restarts).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from suanli.errors import InvalidInput, UnknownName

__all__ = ["default_data_dir", "register"]


def register(app: typer.Typer) -> None:
    """Add ``suanli gateway`` to ``app``."""
    app.command("gateway")(gateway)


def default_data_dir(name: str) -> Path:
    """``$XDG_DATA_HOME/suanli/gateways/<name>`` (or under ``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "suanli" / "gateways" / name


def _check_city(city: str | None) -> str | None:
    if city is None:
        return None
    from suanli.catalog import load_catalog

    cities = list(load_catalog().cities)
    by_lower = {c.lower(): c for c in cities}
    if city.lower() not in by_lower:
        raise UnknownName("city", city, cities)
    return by_lower[city.lower()]


def _read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise InvalidInput(f"--token-file {token_file} is empty")
        return token
    token = os.environ.get("SUANLI_TOKEN", "").strip()
    if not token:
        raise InvalidInput("give the exchange's operator token: --token-file F or SUANLI_TOKEN")
    return token


def _check_data_dir(data_dir: Path, name: str) -> None:
    """Fail here, with a message, rather than inside the server's startup."""
    from suanli.gateway.journal import Journal

    try:
        Journal(data_dir, name).close()
    except OSError as exc:
        raise InvalidInput(f"cannot use the data dir {data_dir}: {exc.strerror or exc}") from None


def gateway(
    exchange: Annotated[
        str, typer.Option("--exchange", envvar="SUANLI_URL", help="The exchange's URL.")
    ] = "http://127.0.0.1:8000",
    city: Annotated[
        str | None,
        typer.Option("--city", help="Catalogue city this gateway serves (its users' demand)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8080,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File holding an operator token (else SUANLI_TOKEN)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Usage journal (private to this gateway).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Gateway name in reports (default edge-CITY).")
    ] = None,
    trusted_edge: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-edge",
            help="Network whose x-suanli-city header is believed (repeatable; no --city).",
        ),
    ] = None,
    report_interval_s: Annotated[
        float, typer.Option("--report-interval", min=0.05, help="Seconds between usage reports.")
    ] = 1.0,
    log_level: Annotated[str, typer.Option("--log-level", help="Logging level.")] = "INFO",
) -> None:
    """Run an inference gateway: OpenAI API in front of the services' replicas."""
    import uvicorn

    from suanli.gateway import GatewayConfig, HttpExchangeLink, create_gateway_app, parse_networks

    city = _check_city(city)
    token = _read_token(token_file)
    if not exchange.startswith(("http://", "https://")):
        raise InvalidInput(f"--exchange {exchange!r}: expected an http:// or https:// URL")
    try:
        edges = parse_networks(trusted_edge or [])
    except ValueError as exc:
        raise InvalidInput(f"--trusted-edge: {exc}") from None
    gw_name = name or (f"edge-{city}" if city else f"gateway-{socket.gethostname()}")[:100]
    folder = data_dir or default_data_dir(gw_name)
    _check_data_dir(folder, gw_name)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = GatewayConfig(
        name=gw_name,
        data_dir=folder,
        city=city,
        trusted_edges=edges,
        report_interval_s=report_interval_s,
    )
    app = create_gateway_app(HttpExchangeLink(exchange, token), config)
    gc.freeze()  # what start-up allocated is never garbage: keep it out of the collector's scans
    logging.getLogger("suanli.gateway").info(
        "gateway %s for %s on http://%s:%d, exchange %s, journal in %s",
        gw_name,
        city or "any city",
        host,
        port,
        exchange,
        folder,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        ws="none",
        # the peer address decides whose city header is believed: never X-Forwarded-For
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
