"""``suanli gateway``: clear refusals, and a real process serving, reporting and stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from suanli.cli.main import main
from suanli.gateway.journal import Journal

from .conftest import (
    KEY,
    SERVICE,
    ServerThread,
    Upstream,
    free_port,
    key_entry,
    replica,
    service,
    state,
)
from .test_gateway_link import TOKEN, StubExchange

SUANLI = str(Path(sys.executable).parent / "suanli")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    _, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), err


def test_an_unknown_city_exits_2_with_close_matches(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUANLI_TOKEN", TOKEN)
    code, err = run_cli(capsys, "gateway", "--city", "Shanghia")
    assert code == 2 and "unknown city 'Shanghia'" in err and "Shanghai" in err
    assert "Traceback" not in err


def test_no_token_or_a_busy_data_dir_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SUANLI_TOKEN", raising=False)
    code, err = run_cli(capsys, "gateway", "--city", "Shanghai")
    assert code == 2 and "operator token" in err
    code, err = run_cli(capsys, "gateway", "--token-file", str(tmp_path / "missing"))
    assert code == 2 and "cannot read --token-file" in err
    monkeypatch.setenv("SUANLI_TOKEN", TOKEN)
    held = Journal(tmp_path / "gw", "x")
    try:
        code, err = run_cli(capsys, "gateway", "--data-dir", str(tmp_path / "gw"))
    finally:
        held.close()
    assert code == 2 and "another gateway" in err


@pytest.fixture
def exchange() -> Iterator[tuple[StubExchange, ServerThread]]:
    ex = StubExchange(state([], [key_entry()]))
    server = ServerThread(ex.app()).start()
    yield ex, server
    server.stop()


def test_a_gateway_process_serves_reports_and_stops_cleanly(
    exchange: tuple[StubExchange, ServerThread],
    make_upstream: Callable[[], Upstream],
    tmp_path: Path,
) -> None:
    ex, server = exchange
    up = make_upstream()
    ex.current = state([service([replica("r1", up.url)])], [key_entry()], etag="e9")
    port = free_port()
    token_file = tmp_path / "op.token"
    token_file.write_text(TOKEN + "\n")
    argv = [
        SUANLI,
        "gateway",
        "--exchange",
        server.url,
        "--city",
        "beijing",
        "--port",
        str(port),
        "--token-file",
        str(token_file),
        "--data-dir",
        str(tmp_path / "gw"),
        "--report-interval",
        "30",
    ]
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as c:
            c.chat.completions.create(model=SERVICE, messages=[{"role": "user", "content": "hi"}])
        assert not ex.reports  # the interval is 30 s: only the shutdown delivers it
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn exits by the signal it was stopped with, after a graceful shutdown
        assert proc.wait(30) in (0, -signal.SIGTERM), log.read_text()
    (report,) = ex.reports.values()
    assert report.gateway == "edge-Beijing" and report.usage[0].requests == 1
    assert not [p for p in (tmp_path / "gw").iterdir() if p.name.startswith(("batch-", "segment-"))]
    assert "Traceback" not in log.read_text()
