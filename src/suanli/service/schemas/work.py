"""Jobs and services: the YAML/JSON task formats buyers submit, and what they read back.

A job file, in the spirit of SkyPilot task files::

    kind: job
    name: finetune-qwen
    image: pytorch/pytorch:2.4.0-cuda12.1
    command: torchrun --nproc-per-node 8 train.py
    resources: {gpus: 16, min_mem_gb: 80, allowed_gpus: [H100, H800, H20]}
    work_ref_gpu_hours: 64          # work in H100 GPU-hours
    bid_cny_per_ref_gpu_hour: 12    # the most you pay per H100 GPU-hour
    deadline_h: 12
    data: {origin_city: Shanghai, size_gb: 200}
    interruptible: true
    checkpoint: {every_h: 0.5, dir: ckpt/finetune-qwen}
    env: {WANDB_MODE: offline}      # added to the job's environment on the site
    working_dir: src                # cwd on the site (default: a fresh run folder)
    stop_grace_s: 30                # TERM → KILL, to save a last checkpoint

The site's agent runs ``command`` (with ``/bin/sh -c``) with ``SUANLI_CHECKPOINT_DIR``
set to ``checkpoint.dir`` (default: a folder on the site kept across attempts there) and
``SUANLI_ATTEMPT`` counting placements, so a job moved to another site resumes from its
last checkpoint when ``checkpoint.dir`` is storage both sites reach. ``working_dir`` and
``checkpoint.dir`` are relative paths inside the site's runs root (absolute paths and
``..`` are refused): a buyer's job never picks a place on the seller's machine. ``env``
is visible to the seller who runs the work: it is no place for secrets.

A service file::

    kind: service
    name: chat
    model: Llama-3.1-8B
    demand_rps: {Shanghai: 40, Hangzhou: 10}
    tokens: {prompt: 1000, output: 250, cached_fraction: 0.3}
    slo: {ttft_ms: 500, tpot_ms: 30}
    bid_cny_per_m_input_tokens: 2           # prompt tokens that miss the prefix cache
    bid_cny_per_m_cached_input_tokens: 0.5  # prompt tokens served from the cache
    bid_cny_per_m_output_tokens: 8
    replicas: {min: 1, max: 8}              # bounds on the replicas the clearing plans
    command: vllm serve meta-llama/Llama-3.1-8B-Instruct --port $PORT   # optional
    health_path: /health

With a ``command``, each replica runs on its site through the site's agent, which picks
a port (``$PORT``), reports the replica's endpoint and probes ``health_path`` there.
Without one, replicas are placed and billed but nothing is started.

Bids are yuan per million tokens, the shape of public API price lists; a request is worth
what its tokens are worth at them (``market.valuation``), and the buyer never pays more.
``demand_rps`` is where planning starts: once inference gateways measure a city's demand,
the measurement (with headroom) is planned instead. ``PATCH /v1/services/{id}`` changes
demand, bids, SLO, tokens and replica bounds of a running service.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from suanli.service.schemas.common import In, Name, Out, Text

__all__ = [
    "CheckpointSpec",
    "DataSpec",
    "EventOut",
    "JobOut",
    "JobSpec",
    "PlacementOut",
    "ReplicasSpec",
    "ResourcesSpec",
    "ServiceOut",
    "ServiceSpec",
    "ServiceUpdate",
    "SloSpec",
    "TokensSpec",
    "WhyOut",
]

GpuNames = Annotated[list[Name], Field(min_length=1, max_length=32)]


def _inside_runs_root(path: str) -> str:
    if path.startswith("/"):
        raise ValueError(
            f"{path[:100]!r} is absolute: give a relative path, inside the site's runs root"
        )
    if ".." in path.split("/"):
        raise ValueError(f"{path[:100]!r} climbs out with '..': stay inside the site's runs root")
    return path


# A relative path inside the site's runs root (where the agent puts each job's folders):
# no leading "/", no ".." part, no NUL or control characters.
RunPath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_inside_runs_root),
]
EnvValue = Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00]*$")]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def _check_env(env: dict[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"env name {name[:100]!r} is not a variable name")
        if name.startswith("SUANLI_"):
            raise ValueError(f"env name {name!r}: SUANLI_* names are set by the site's agent")
    return env


class ResourcesSpec(In):
    gpus: int = Field(default=1, gt=0, le=4096)
    min_mem_gb: float = Field(default=0.0, ge=0, le=10_000, allow_inf_nan=False)
    allowed_gpus: GpuNames | None = None


class DataSpec(In):
    origin_city: Name
    size_gb: float = Field(default=0.0, ge=0, le=10_000_000, allow_inf_nan=False)


class CheckpointSpec(In):
    every_h: float = Field(gt=0, le=10_000, allow_inf_nan=False)
    dir: RunPath | None = None


class JobSpec(In):
    kind: Literal["job"] = "job"
    name: Name
    image: Annotated[str, Field(max_length=300, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None
    command: Text | None = None
    resources: ResourcesSpec = ResourcesSpec()
    work_ref_gpu_hours: float = Field(gt=0, le=10_000_000, allow_inf_nan=False)
    bid_cny_per_ref_gpu_hour: float = Field(ge=0, le=10_000, allow_inf_nan=False)
    deadline_h: float | None = Field(default=None, gt=0, le=87_600, allow_inf_nan=False)
    data: DataSpec
    interruptible: bool = False
    checkpoint: CheckpointSpec | None = None
    env: dict[str, EnvValue] | None = Field(default=None, max_length=100)
    working_dir: RunPath | None = None
    stop_grace_s: float | None = Field(default=None, ge=0, le=3600, allow_inf_nan=False)

    _env = field_validator("env")(_check_env)

    def run_spec(self) -> dict[str, object] | None:
        """How a site runs it, beyond the command (None when the spec says nothing)."""
        spec: dict[str, object] = {}
        if self.env:
            spec["env"] = dict(self.env)
        if self.working_dir:
            spec["working_dir"] = self.working_dir
        if self.checkpoint is not None and self.checkpoint.dir:
            spec["checkpoint_dir"] = self.checkpoint.dir
        if self.stop_grace_s is not None:
            spec["stop_grace_s"] = self.stop_grace_s
        return spec or None

    @model_validator(mode="after")
    def _runnable(self) -> JobSpec:
        if not self.image and not self.command:
            raise ValueError("give an image, a command, or both: there is nothing to run")
        return self


class TokensSpec(In):
    prompt: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)
    output: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)
    # The share of prompt tokens the owner expects the prefix cache to serve.
    cached_fraction: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)


class SloSpec(In):
    ttft_ms: float = Field(gt=0, le=600_000, allow_inf_nan=False)
    tpot_ms: float = Field(gt=0, le=60_000, allow_inf_nan=False)


class ServiceResources(In):
    allowed_gpus: GpuNames | None = None


class ReplicasSpec(In):
    """Bounds on the replicas the clearing plans; ``max`` None: as many as demand needs."""

    min: int = Field(default=0, ge=0, le=10_000)
    max: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicasSpec:
        if self.max is not None and self.max < max(1, self.min):
            raise ValueError(
                f"replicas.max ({self.max}) must be at least 1 and at least replicas.min "
                f"({self.min})"
            )
        return self


Bid = Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)]


def _check_demand(v: dict[str, float]) -> dict[str, float]:
    for city, rps in v.items():
        if not (isinstance(rps, (int, float)) and 0 <= rps <= 1_000_000 and rps == rps):
            raise ValueError(f"demand for {city!r} must be a number in [0, 1e6], got {rps}")
    if sum(v.values()) <= 0:
        raise ValueError("total demand must be above 0 requests per second")
    return v


class ServiceSpec(In):
    kind: Literal["service"] = "service"
    name: Name
    model: Name
    demand_rps: dict[Name, float] = Field(min_length=1, max_length=64)
    tokens: TokensSpec
    slo: SloSpec
    bid_cny_per_m_output_tokens: Bid
    bid_cny_per_m_input_tokens: Bid = 0.0
    bid_cny_per_m_cached_input_tokens: Bid = 0.0
    replicas: ReplicasSpec = ReplicasSpec()
    resources: ServiceResources = ServiceResources()
    command: Text | None = None
    env: dict[str, EnvValue] | None = Field(default=None, max_length=100)
    health_path: (
        Annotated[str, StringConstraints(max_length=200, pattern=r"^/[\x21-\x7e]*$")] | None
    ) = None

    _env = field_validator("env")(_check_env)

    def run_spec(self) -> dict[str, object] | None:
        spec: dict[str, object] = {}
        if self.env:
            spec["env"] = dict(self.env)
        if self.health_path:
            spec["health_path"] = self.health_path
        return spec or None

    _demand = field_validator("demand_rps")(_check_demand)


class ServiceUpdate(In):
    """What ``PATCH /v1/services/{id}`` may change; fields left out stay as they are.
    Validated like a new service; the next round that clears the service uses it."""

    demand_rps: dict[Name, float] | None = Field(default=None, min_length=1, max_length=64)
    tokens: TokensSpec | None = None
    slo: SloSpec | None = None
    bid_cny_per_m_output_tokens: Bid | None = None
    bid_cny_per_m_input_tokens: Bid | None = None
    bid_cny_per_m_cached_input_tokens: Bid | None = None
    replicas: ReplicasSpec | None = None

    @field_validator("demand_rps")
    @classmethod
    def _demand(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        return None if v is None else _check_demand(v)

    @model_validator(mode="after")
    def _something(self) -> ServiceUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to update: give at least one field")
        return self


class EventOut(Out):
    id: int
    at: datetime
    kind: str
    subject_kind: str
    subject_id: str
    from_state: str | None
    to_state: str | None
    reason: str
    actor: str | None = None
    data: dict[str, object] | None = None


class PlacementOut(Out):
    allocation_id: str
    pool_id: str
    site_id: str | None
    gpu: str | None
    gpus: int
    price_cny_per_gpu_hour: float
    planned_h: float
    held_buyer_fen: int
    held_voucher_fen: int
    voucher_program_id: str | None
    why: str
    active: bool
    endpoint: str | None = None
    health: str | None = None


class JobOut(Out):
    id: str
    tenant_id: str
    name: str
    state: str
    reason: str
    image: str | None
    command: str | None
    gpus: int
    work_ref_gpu_hours: float
    done_ref_gpu_hours: float
    bid_cny_per_ref_gpu_hour: float
    origin_city: str
    data_gb: float
    interruptible: bool
    deadline_at: datetime | None
    pool_id: str | None
    exit_code: int | None
    last_reasons: list[str]
    submitted_at: datetime
    placed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class ServiceOut(Out):
    id: str
    tenant_id: str
    name: str
    state: str
    reason: str
    model: str
    demand_rps: dict[str, float]
    served_rps: float
    prompt_tokens: float
    output_tokens: float
    ttft_ms: float
    tpot_ms: float
    cached_fraction: float = 0.0
    bid_cny_per_m_output_tokens: float
    bid_cny_per_m_input_tokens: float = 0.0
    bid_cny_per_m_cached_input_tokens: float = 0.0
    min_replicas: int = 0
    max_replicas: int | None = None
    # City → requests/s: what the last round planned for, and what gateways measured
    # (smoothed); a city is planned at its declared demand until it is measured.
    planned_demand_rps: dict[str, float] = Field(default_factory=dict)
    measured_rps: dict[str, float] = Field(default_factory=dict)
    last_reasons: list[str]
    replicas: list[PlacementOut] = Field(default_factory=list)
    submitted_at: datetime
    stopped_at: datetime | None

    @field_validator("planned_demand_rps", mode="before")
    @classmethod
    def _none_is_empty(cls, v: object) -> object:
        return {} if v is None else v


class WhyOut(Out):
    id: str
    kind: Literal["job", "service"]
    state: str
    summary: str
    reasons: list[str]
    placements: list[PlacementOut]
    events: list[EventOut]
