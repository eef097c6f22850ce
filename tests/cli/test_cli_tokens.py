"""``suanli tokens list|create|revoke`` against a live server (D11)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from suanli.cli.main import main
from suanli.service.app import bootstrap, create_app
from suanli.service.settings import ServiceSettings


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def logged_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server with two live tokens allowed per account; the CLI logged in as operator."""
    app = create_app(
        ServiceSettings(data_dir=tmp_path, clearing_enabled=False, max_tokens_per_account=2)
    )
    token = bootstrap(app)
    assert token
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.started
    monkeypatch.setenv("SUANLI_CONFIG", str(tmp_path / "login.json"))
    monkeypatch.setenv("SUANLI_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("SUANLI_TOKEN", token)
    yield token
    srv.should_exit = True
    thread.join(10)
    sock.close()


def test_create_list_revoke_and_the_cap(logged_in: str, capsys: Any) -> None:
    code, out, err = _run(capsys, "tokens", "create", "--label", "ci", "--expires-in-days", "7")
    assert code == 0, err
    assert "shown once" in out and "expires" in out
    code, out, _ = _run(capsys, "tokens", "list", "--json")
    rows = json.loads(out)
    assert [(t["label"], t["current"]) for t in rows] == [
        ("created with the account", True),
        ("ci", False),
    ]
    # A third live token passes the cap of two: a clear message, exit 2, no traceback.
    code, out, err = _run(capsys, "tokens", "create")
    assert code == 2 and "revoke some first" in err and "Traceback" not in err
    ci = rows[1]["id"]
    code, out, err = _run(capsys, "tokens", "revoke", ci)
    assert code == 0 and f"token {ci} revoked" in out
    code, out, _ = _run(capsys, "tokens", "list", "--json")
    assert [t["label"] for t in json.loads(out)] == ["created with the account"]


@pytest.mark.parametrize("days", ["0", "-1", "many", "4000"])
def test_a_bad_expiry_exits_2(logged_in: str, capsys: Any, days: str) -> None:
    code, _, err = _run(capsys, "tokens", "create", "--expires-in-days", days)
    assert code == 2 and "expires-in-days" in err
