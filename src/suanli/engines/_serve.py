"""Serving the stand-in (:mod:`suanli.engines.standin`) with uvicorn: a throughput-tuned
config, serving in the foreground until interrupted, and serving on a free port in a
background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["serve_forever", "serve_in_thread", "uvicorn_config"]


def uvicorn_config(app: Any, **kwargs: Any) -> uvicorn.Config:
    """Tuned for throughput: no access log, httptools and uvloop when installed (uvicorn's
    ``auto`` falls back to h11 and asyncio), no websockets."""
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        http="auto",
        loop="auto",
        ws="none",
        lifespan="on",
        **kwargs,
    )


def serve_forever(app: Any, *, host: str, port: int) -> None:
    """Serve ``app`` until interrupted (SIGINT/SIGTERM)."""
    uvicorn.Server(uvicorn_config(app, host=host, port=port)).run()


@contextlib.contextmanager
def serve_in_thread(app: Any, *, host: str, timeout_s: float) -> Iterator[str]:
    """Serve ``app`` on a free port in a background thread; yield its base URL (like
    ``http://127.0.0.1:PORT``) once it accepts connections, and stop it on exit. The port
    is bound before the server starts, so there is no race for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"standin-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in on port {port} did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
