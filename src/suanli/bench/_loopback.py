"""The real exchange and real site agents as subprocesses on loopback, for benchmarks.

``ExchangeProcess`` runs ``suanli up --no-agent`` (SQLite in a data dir, a free port on
127.0.0.1) and can be killed and started again on the same data dir and port: the
operator token printed by its first start stays valid. ``AgentProcess`` runs ``suanli
agent`` with its own state dir, restartable the same way. Each keeps one log file, appended
across restarts. Nothing here listens beyond loopback or outlives ``stop()``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suanli.sdk import ApiError, Client

__all__ = [
    "SUANLI",
    "AgentProcess",
    "ExchangeProcess",
    "clean_env",
    "free_port",
    "stop_process",
    "wait_for",
]

SUANLI = str(Path(sys.executable).parent / "suanli")
_TOKEN = re.compile(r"\b(sl_[A-Za-z0-9_-]{20,})")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxies (loopback must stay loopback)."""
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    return {**env, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost", **(extra or {})}


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to a process we started and reap it (KILL after 30 s)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``pred`` until true; RuntimeError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError(f"gave up after {timeout_s:g} s waiting for {what}")


class _Managed:
    """What both processes share: a log appended across restarts, kill -9 and stop."""

    proc: subprocess.Popen[bytes] | None
    log: Path

    def kill(self) -> None:
        """kill -9, and reap it (an agent's sandboxed jobs die with it)."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class ExchangeProcess(_Managed):
    """``suanli up --no-agent`` on ``data_dir``; ``start()`` again after a kill."""

    data_dir: Path
    log: Path
    clear_interval_s: float
    env: Mapping[str, str] = field(default_factory=dict)  # SUANLI_* settings
    port: int = field(default_factory=free_port)
    token: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        """Start it and wait until it answers; the first start reads the operator token."""
        argv = [SUANLI, "up", "--no-agent", "--port", str(self.port)]
        argv += ["--data-dir", str(self.data_dir), "--clear-interval", f"{self.clear_interval_s:g}"]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=out, env=clean_env(self.env), start_new_session=True
            )
        self.starts += 1
        proc = self.proc
        if self.token is None:

            def printed() -> bool:
                with self.log.open("rb") as f:
                    f.seek(offset)
                    m = _TOKEN.search(f.read().decode(errors="replace"))
                if m:
                    self.token = m.group(1)
                return bool(m) or proc.poll() is not None

            wait_for(printed, timeout_s, "the exchange's operator token")
        if self.token is None or proc.poll() is not None:
            raise RuntimeError(f"the exchange did not start:\n{self.tail()}")
        with Client(self.url, self.token, retries=0, timeout_s=5.0) as probe:

            def healthy() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"the exchange exited at start:\n{self.tail()}")
                try:
                    probe.request("GET", "/healthz")
                except ApiError:
                    return False
                return True

            wait_for(healthy, timeout_s, "the exchange to answer")

    def client(self, token: str | None = None, retries: int = 2) -> Client:
        """A client of this exchange (the operator's unless ``token`` is given)."""
        return Client(self.url, token or self.token, retries=retries, timeout_s=30.0)


@dataclass
class AgentProcess(_Managed):
    """``suanli agent`` for one site with its own state dir; ``start()`` again after a kill."""

    exchange: ExchangeProcess
    token: str
    backend: str
    site: str
    city: str
    reserve_cny_per_gpu_hour: float
    state_dir: Path
    log: Path
    opts: Sequence[str] = ()
    poll_interval_s: float = 0.2
    lease_interval_s: float = 0.2
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def argv(self) -> list[str]:
        return [
            SUANLI,
            "agent",
            *("--exchange", self.exchange.url, "--token", self.token),
            *("--backend", self.backend, "--site", self.site, "--city", self.city),
            *("--reserve", f"{self.reserve_cny_per_gpu_hour:g}"),
            *("--state-dir", str(self.state_dir)),
            *("--poll-interval", f"{self.poll_interval_s:g}"),
            *("--lease-interval", f"{self.lease_interval_s:g}"),
            *self.opts,
        ]

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv(), stdout=out, stderr=out, env=clean_env(), start_new_session=True
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def registrations(self) -> int:
        """How many times an agent of this site has registered, by its log."""
        return self.tail(10**9).count(f"registered site {self.site} ")
