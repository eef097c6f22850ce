"""The agent ``suanli up`` runs beside the exchange, so the embedded default runs real work.

It serves one site (``local``) with the ``local`` backend: the host's GPUs from NVML, or,
without them, the inventory file in the data directory — written on first start with a
few simulated GPUs (jobs get ``CUDA_VISIBLE_DEVICES`` indices but no device). Buyers'
work runs in the backend's sandbox (``sandbox``), never with the exchange's rights. It
talks to the exchange over HTTP like any other agent, from a daemon thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from suanli.agent.exchange import ExchangeLink
from suanli.agent.local import local_backend
from suanli.agent.runner import AgentRunner, AgentSettings
from suanli.sdk import Client

__all__ = ["DEFAULT_GPUS", "DEFAULT_GPU_MODEL", "EmbeddedAgent", "start_embedded_agent"]

log = logging.getLogger("suanli.agent")

DEFAULT_GPUS = 4
DEFAULT_GPU_MODEL = "H100"


@dataclass
class EmbeddedAgent:
    runner: AgentRunner
    thread: threading.Thread
    stop_event: threading.Event
    client: Client
    inventory: Path

    def stop(self, *, cancel_running: bool = True, timeout_s: float = 10.0) -> None:
        """Stop the loop, then the work it holds (reported preempted while the exchange
        still answers), then the agent."""
        self.stop_event.set()
        self.thread.join(timeout_s)
        self.runner.shutdown(cancel_running=cancel_running, flush_timeout_s=timeout_s)
        self.runner.backend.close()
        self.client.close()


def default_inventory(gpus: int, gpu_model: str) -> str:
    return (
        "# GPUs of the site `suanli up` serves, used when NVML finds none on this host.\n"
        "# Declare your real ones here (and drop `simulated`), then restart `suanli up`.\n"
        "pools:\n"
        f"  - gpu: {gpu_model}\n"
        f"    count: {gpus}\n"
        "    simulated: true\n"
    )


def start_embedded_agent(
    url: str,
    token: str,
    state_dir: Path,
    *,
    site_id: str = "local",
    city: str = "Shanghai",
    reserve_cny_per_gpu_hour: float = 5.0,
    gpus: int = DEFAULT_GPUS,
    gpu_model: str = DEFAULT_GPU_MODEL,
    poll_interval_s: float = 0.5,
    sandbox: bool = True,
) -> EmbeddedAgent:
    """Start the local agent's thread (it registers once the exchange answers).
    ``SandboxUnavailable`` when work cannot be sandboxed here (and ``sandbox`` is on)."""
    inventory = state_dir / "inventory.yaml"
    if not inventory.exists():
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        inventory.write_text(default_inventory(gpus, gpu_model), encoding="utf-8")
    backend = local_backend(
        {
            "runs_dir": str(state_dir / "runs"),
            "inventory": str(inventory),
            "sandbox": {"enabled": sandbox},
        }
    )
    client = Client(url, token, retries=1, timeout_s=30.0)
    runner = AgentRunner(
        backend,
        ExchangeLink(client, site_id),
        AgentSettings(
            site_id=site_id,
            state_dir=state_dir,
            city=city,
            site_name="this machine (suanli up)",
            reserve_cny_per_gpu_hour=reserve_cny_per_gpu_hour,
            poll_interval_s=poll_interval_s,
            lease_interval_s=poll_interval_s,
        ),
    )
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), name="suanli-agent", daemon=True)
    thread.start()
    return EmbeddedAgent(runner, thread, stop, client, inventory)
