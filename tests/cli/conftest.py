"""Shared helpers for the CLI tests: run ``suanli`` in process, and serve a live exchange
on a free local socket with the CLI pointed at it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from suanli.cli.main import main
from suanli.service.accounts import create_tenant
from suanli.service.auth import Role
from suanli.service.runtime import Runtime

ServeLive = Callable[[FastAPI, str], str]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``suanli ARGV``; its exit code (1 for a non-int one), stdout and stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out, err


def ok_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``suanli ARGV``, insist on exit 0 and return stdout."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err + out
    return out


def buyer_token(rt: Runtime, tenant: str = "lab", user: str = "alice") -> str:
    """A new tenant with one buyer; that buyer's API token."""
    made = rt.db.transact(
        lambda s: create_tenant(s, tenant, [(user, Role.BUYER)], rt.clock.now())[1]
    )
    return made[0][1]


@pytest.fixture
def serve_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeLive]:
    """Serve an app with uvicorn on a free socket in a thread and log the CLI in to it
    with a token (``SUANLI_CONFIG``/``SUANLI_URL``/``SUANLI_TOKEN``); returns the URL.
    Every server started is stopped at teardown."""
    with ExitStack() as stack:

        def start(app: FastAPI, token: str) -> str:
            sock = socket.socket()
            stack.callback(sock.close)
            sock.bind(("127.0.0.1", 0))
            srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
            thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()

            def stop() -> None:
                srv.should_exit = True
                thread.join(10)

            stack.callback(stop)
            deadline = time.monotonic() + 10
            while not srv.started and time.monotonic() < deadline:
                time.sleep(0.01)
            assert srv.started
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            monkeypatch.setenv("SUANLI_CONFIG", str(tmp_path / "login.json"))
            monkeypatch.setenv("SUANLI_URL", url)
            monkeypatch.setenv("SUANLI_TOKEN", token)
            return url

        yield start
