"""``suanli keys create|list|revoke`` against a live exchange: the key printed once with
a warning, listed without it, revoked at once; bad input exits 2 with a message."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli.cli.main import main
from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.runtime import Runtime
from suanli.service.settings import ServiceSettings

from .conftest import ServeLive, buyer_token, ok_cli, run_cli

SERVICE_YAML = """\
kind: service
name: chat
model: Llama-3.1-8B
demand_rps: {Shanghai: 4}
tokens: {prompt: 1000, output: 250}
slo: {ttft_ms: 2000, tpot_ms: 100}
bid_cny_per_m_output_tokens: 40
"""


@pytest.fixture
def owner(serve_live: ServeLive, tmp_path: Path) -> Iterator[Runtime]:
    """A live exchange (no clearing); the CLI logged in as a buyer with service chat."""
    app = create_app(ServiceSettings(data_dir=tmp_path, clearing_enabled=False))
    rt = runtime_of(app)
    assert bootstrap(app)
    serve_live(app, buyer_token(rt))
    spec = tmp_path / "chat.yaml"
    spec.write_text(SERVICE_YAML)
    with pytest.raises(SystemExit) as done:
        main(["serve", "up", str(spec)])
    assert done.value.code == 0
    yield rt


def test_create_list_revoke(owner: Runtime, capsys: Any) -> None:
    capsys.readouterr()
    code, out, err = run_cli(capsys, "keys", "create", "--service", "chat", "--name", "app-1")
    assert code == 0, err
    assert "shown once" in err and "no limits" in out
    key = re.search(r"sk-suanli-[A-Za-z0-9_-]{40}", out)
    assert key is not None
    made = json.loads(
        ok_cli(
            capsys,
            *("keys", "create", "--service", "chat", "--name", "app-2"),
            *("--rpm", "600", "--tokens-per-day", "1000000", "--json"),
        )
    )
    assert made["key"].startswith("sk-suanli-") and made["rpm"] == 600
    rows = json.loads(ok_cli(capsys, "keys", "list", "--json"))
    assert [(k["name"], k["key"]) for k in rows] == [("app-1", None), ("app-2", None)]
    assert rows[0]["prefix"] == key.group(0)[:16]
    table = ok_cli(capsys, "keys", "list", "--service", "chat")
    assert "app-1" in table and "chat" in table and key.group(0) not in table

    before = owner.serving_changes.count
    assert f"key {made['id']} revoked" in ok_cli(capsys, "keys", "revoke", made["id"])
    assert owner.serving_changes.count == before + 1
    ok_cli(capsys, "keys", "revoke", made["id"])  # twice is harmless
    assert [k["name"] for k in json.loads(ok_cli(capsys, "keys", "list", "--json"))] == ["app-1"]
    every = ok_cli(capsys, "keys", "list", "--all")
    assert "app-2" in every and "revoked" in every


def test_bad_input_exits_2(owner: Runtime, capsys: Any) -> None:
    cases = [
        (("keys", "create", "--service", "nope", "--name", "a"), "your services: chat"),
        (("keys", "create", "--service", "chat", "--name", "a", "--rpm", "0"), "--rpm"),
        (("keys", "create", "--service", "chat", "--name", ""), "name"),
        (("keys", "create", "--service", "chat"), "--name"),
        (("keys", "revoke", "key-nonexistent"), "404"),
        (("keys", "list", "--service", "nope"), "no service named 'nope'"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    ok_cli(capsys, "serve", "down", "chat")
    code, _, err = run_cli(capsys, "keys", "create", "--service", "chat", "--name", "late")
    assert code == 2 and "stopped" in err
