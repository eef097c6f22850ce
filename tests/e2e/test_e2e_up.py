"""``suanli up`` out of the box: its local agent registers the site ``local`` and a job
with a command really runs as a local process; ``--demo`` still clears its simulated
fleet beside it."""

from __future__ import annotations

import contextlib
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

pytestmark = [
    pytest.mark.slow,  # end to end: real `suanli` processes
    pytest.mark.requires("bwrap"),  # its local site runs work sandboxed
]

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


def _job(name: str, command: str, gpus: int = 1) -> dict[str, Any]:
    return {
        "kind": "job",
        "name": name,
        "command": command,
        "resources": {"gpus": gpus},
        "work_ref_gpu_hours": 0.1,
        "bid_cny_per_ref_gpu_hour": 12,
        "data": {"origin_city": "Shanghai"},
    }


def _run_dir(tmp: Path, job_id: str) -> Path:
    return tmp / "data" / "agent" / "runs" / f"suanli-{job_id}-1"


def test_up_runs_a_submitted_job_sandboxed_as_a_local_process(tmp_path: Path) -> None:
    proc, op, log = _up(tmp_path, "--clear-interval", "0.3", "--open-local-site")
    try:
        with contextlib.ExitStack() as stack:
            lab = op.create_tenant("lab", [{"name": "u", "role": "buyer"}])
            op.deposit(lab["id"], 100_000)
            buyer = stack.enter_context(Client(op.url, lab["accounts"][0]["token"]))
            job = buyer.submit(
                _job("hello", 'echo "gpus=$CUDA_VISIBLE_DEVICES uid=$(id -u)" > proof.txt', gpus=2)
            )
            # A buyer's job going for the exchange's database and the agent's journal.
            db, journal = tmp_path / "data" / "exchange.db", tmp_path / "data" / "agent"
            thief = buyer.submit(_job("thief", f"cat {db} {journal}/journal.jsonl"))
            for j in (job, thief):
                _until(lambda j=j: buyer.job(j["id"])["state"] in DONE, 60, j["name"], log)
            assert buyer.job(job["id"])["state"] == "succeeded"
            assert buyer.job(job["id"])["pool_id"] == "local/local-h100"
            # It ran here: two of the four simulated GPUs, as an unprivileged user.
            proof = (_run_dir(tmp_path, job["id"]) / "work" / "proof.txt").read_text().strip()
            assert re.fullmatch(r"gpus=\d,\d uid=\d+", proof)
            assert proof.split("uid=")[1] != "0"
            # The thief found nothing: no such files in its view, and it failed saying so.
            assert buyer.job(thief["id"])["state"] == "failed"
            stolen = (_run_dir(tmp_path, thief["id"]) / "stdout.log").read_text()
            assert "sl_" not in stolen and "api_tokens" not in stolen
            assert "No such file" in (_run_dir(tmp_path, thief["id"]) / "stderr.log").read_text()
    finally:
        _stop(proc)
        op.close()
    text = log.read_text()
    assert "local site agent: site `local` in Shanghai, pools offered at 5 yuan/GPU-h" in text
    assert (tmp_path / "data" / "agent" / "inventory.yaml").exists()


def test_up_local_site_takes_only_the_operators_tenant_by_default(tmp_path: Path) -> None:
    proc, op, log = _up(tmp_path, "--clear-interval", "0.3")
    try:
        with contextlib.ExitStack() as stack:
            lab = op.create_tenant("lab", [{"name": "u", "role": "buyer"}])
            op.deposit(lab["id"], 100_000)
            outsider = stack.enter_context(Client(op.url, lab["accounts"][0]["token"]))
            home = op.request("GET", "/v1/me")["tenant_id"]
            made = op.request(
                "POST", f"/v1/tenants/{home}/accounts", json_body={"name": "own", "role": "buyer"}
            )
            op.deposit(home, 100_000)
            insider = stack.enter_context(Client(op.url, made["token"]))
            theirs = outsider.submit(_job("theirs", "true"))
            ours = insider.submit(_job("ours", "true"))
            _until(lambda: insider.job(ours["id"])["state"] == "succeeded", 60, "our job", log)
            left = outsider.job(theirs["id"])
            assert left["state"] == "pending" and "private" in str(left["last_reasons"]), left
    finally:
        _stop(proc)
        op.close()
    assert "to the operator's own tenant only" in log.read_text()


DONE = ("succeeded", "failed", "cancelled")


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
