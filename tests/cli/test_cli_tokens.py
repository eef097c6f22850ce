"""``suanli tokens list|create|revoke`` against a live server (D11)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli.service.app import bootstrap, create_app
from suanli.service.settings import ServiceSettings

from .conftest import ServeLive, run_cli


@pytest.fixture
def logged_in(serve_live: ServeLive, tmp_path: Path) -> Iterator[str]:
    """A server with two live tokens allowed per account; the CLI logged in as operator."""
    app = create_app(
        ServiceSettings(data_dir=tmp_path, clearing_enabled=False, max_tokens_per_account=2)
    )
    token = bootstrap(app)
    assert token
    serve_live(app, token)
    yield token


def test_create_list_revoke_and_the_cap(logged_in: str, capsys: Any) -> None:
    code, out, err = run_cli(capsys, "tokens", "create", "--label", "ci", "--expires-in-days", "7")
    assert code == 0, err
    assert "shown once" in out and "expires" in out
    code, out, _ = run_cli(capsys, "tokens", "list", "--json")
    rows = json.loads(out)
    assert [(t["label"], t["current"]) for t in rows] == [
        ("created with the account", True),
        ("ci", False),
    ]
    # A third live token passes the cap of two: a clear message, exit 2, no traceback.
    code, out, err = run_cli(capsys, "tokens", "create")
    assert code == 2 and "revoke some first" in err and "Traceback" not in err
    ci = rows[1]["id"]
    code, out, err = run_cli(capsys, "tokens", "revoke", ci)
    assert code == 0 and f"token {ci} revoked" in out
    code, out, _ = run_cli(capsys, "tokens", "list", "--json")
    assert [t["label"] for t in json.loads(out)] == ["created with the account"]


@pytest.mark.parametrize("days", ["0", "-1", "many", "4000"])
def test_a_bad_expiry_exits_2(logged_in: str, capsys: Any, days: str) -> None:
    code, _, err = run_cli(capsys, "tokens", "create", "--expires-in-days", days)
    assert code == 2 and "expires-in-days" in err
