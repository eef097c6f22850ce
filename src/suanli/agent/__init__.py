"""Site agents' execution backends: run placed work on local processes, Slurm or Ray.

``backend`` holds the one interface and its values; ``registry`` builds backends by name
from configuration. ``runner`` is the agent itself (``suanli agent``): it registers the
site's pools, heartbeats, leases placed work, runs it on a backend and reports back,
through ``exchange`` (the SDK's HTTP client). The agent never imports FastAPI or
SQLAlchemy: it is a client.
"""

from suanli.agent.backend import (
    Backend,
    BackendError,
    BackendUnavailable,
    Capacity,
    Feature,
    Handle,
    JobState,
    JobStatus,
    Limitation,
    PoolCapacity,
    ResumeContract,
    ResumeMode,
    SubmitRefused,
    Usage,
    WorkSpec,
)
from suanli.agent.registry import BackendFactory, create_backend, default_registry

__all__ = [
    "Backend",
    "BackendError",
    "BackendFactory",
    "BackendUnavailable",
    "Capacity",
    "Feature",
    "Handle",
    "JobState",
    "JobStatus",
    "Limitation",
    "PoolCapacity",
    "ResumeContract",
    "ResumeMode",
    "SubmitRefused",
    "Usage",
    "WorkSpec",
    "create_backend",
    "default_registry",
]
