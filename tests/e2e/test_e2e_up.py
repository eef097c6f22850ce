"""``suanli up`` out of the box: its local agent registers the site ``local`` and a job
with a command really runs as a local process; ``--demo`` still clears its simulated
fleet beside it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from suanli.sdk import ApiError, Client

pytestmark = pytest.mark.slow  # end to end: real `suanli` processes

SUANLI = str(Path(sys.executable).parent / "suanli")


def _up(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Client, Path]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp / "up.log"
    argv = [SUANLI, "up", "--port", str(port), "--data-dir", str(tmp / "data"), *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=out,
            env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "HOME": str(tmp)},
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"\b(sl_[A-Za-z0-9_-]{20,})", log.read_text(errors="replace"))
        if m and _listening(port):
            return proc, Client(f"http://127.0.0.1:{port}", m.group(1), retries=1), log
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"no operator token:\n{log.read_text()}")


def _listening(port: int) -> bool:
    """The token is printed before uvicorn binds; wait until it answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _until(pred: Any, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except ApiError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}:\n{log.read_text()[-3000:]}")


def test_up_runs_a_submitted_job_as_a_local_process(tmp_path: Path) -> None:
    proc, op, log = _up(tmp_path, "--clear-interval", "0.3")
    try:
        lab = op.create_tenant("lab", [{"name": "u", "role": "buyer"}])
        op.deposit(lab["id"], 100_000)
        buyer = Client(op.url, lab["accounts"][0]["token"])
        out = tmp_path / "proof.txt"
        job = buyer.submit(
            {
                "kind": "job",
                "name": "hello",
                "command": f'echo "gpus=$CUDA_VISIBLE_DEVICES pid=$$" > {out}',
                "resources": {"gpus": 2},
                "work_ref_gpu_hours": 0.1,
                "bid_cny_per_ref_gpu_hour": 12,
                "data": {"origin_city": "Shanghai"},
            }
        )
        _until(lambda: buyer.job(job["id"])["state"] == "succeeded", 60, "the job", log)
        assert buyer.job(job["id"])["pool_id"] == "local/local-h100"
        # It ran here: two of the default four simulated GPUs, a real process.
        assert re.fullmatch(r"gpus=0,1 pid=\d+", out.read_text().strip())
        buyer.close()
    finally:
        _stop(proc)
        op.close()
    text = log.read_text()
    assert "local site agent: site `local` in Shanghai, pools offered at 5 yuan/GPU-h" in text
    assert (tmp_path / "data" / "agent" / "inventory.yaml").exists()


def test_up_demo_keeps_its_simulated_fleet_and_serves_the_local_site(tmp_path: Path) -> None:
    proc, op, log = _up(tmp_path, "--demo", "--clear-interval", "0.5")
    try:

        def local_offered() -> bool:
            pools = op.request("GET", "/v1/pools", params={"limit": 1000})
            return any(p["id"] == "local/local-h100" and p["on_offer"] for p in pools)

        _until(local_offered, 60, "the local site's pool", log)
        # The demo buyers' work clears on the simulated fleet.
        _until(lambda: any(r["jobs_placed"] > 0 for r in op.rounds()), 60, "a demo round", log)
    finally:
        _stop(proc)
        op.close()
    assert "pools offered at 40 yuan/GPU-h" in log.read_text()
