"""Metering that survives crashes and lost answers: each usage counted exactly once.

Each finished request appends one JSON line to the current *segment* with a single
``os.write`` on an ``O_APPEND`` descriptor — in the kernel once the call returns, so a
``kill -9`` of the gateway loses nothing (no fsync per request: a power loss may lose the
last moments). Every ``report_interval_s`` the segment is closed and renamed, atomically,
to a *batch* file whose name carries a fresh batch id and the window; the batch is
aggregated into one :class:`GatewayReport` and sent. The file is deleted only when the
exchange acknowledges that batch id — a duplicate acknowledgement too —, so a batch is
resent, under the same id, until it is; the exchange records each batch id once.

On start a left-over segment becomes a batch (its window ends at its last write) and every
batch file is sent again. Files are private (0600 in a 0700 directory, which is locked: one
gateway per data dir).

    segment-<window start ms>.jsonl
    batch-<batch id>-<window start ms>-<window end ms>.jsonl
    refused-batch-….jsonl     a batch the exchange refused for good (kept, not resent)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from suanli.errors import InvalidInput
from suanli.gateway.meter import Outcome
from suanli.gateway.protocol import GatewayReport
from suanli.gateway.report import build_report, tokens_per_key

__all__ = ["MAX_OUTCOMES", "Batch", "Journal"]

log = logging.getLogger("suanli.gateway")
MAX_OUTCOMES = 10_000  # per batch: a report holds at most this many usage and demand lines
_SEGMENT = re.compile(r"^segment-(\d+)\.jsonl$")
_BATCH = re.compile(r"^batch-([0-9a-f]{32})-(\d+)-(\d+)\.jsonl$")


@dataclass(slots=True)
class Batch:
    """One closed window waiting for its acknowledgement."""

    path: Path
    report: GatewayReport
    ends: list[float] = field(default_factory=list)  # request end times (metering lag)
    tokens: dict[str, int] = field(default_factory=dict)  # per key (daily limits)

    @property
    def batch_id(self) -> str:
        return self.report.batch_id


class Journal:
    """The segment being written and the batches not yet acknowledged, in ``data_dir``."""

    def __init__(
        self, data_dir: Path, gateway: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.dir = data_dir
        self.gateway = gateway
        self._clock = clock
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        self._lock = os.open(data_dir / "gateway.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise InvalidInput(f"another gateway is using the data dir {data_dir}") from None
        self._fd: int | None = None
        self._segment: Path | None = None
        self._outcomes: list[Outcome] = []
        self._window_start = clock()
        self.pending: dict[str, Batch] = {}  # by batch id, oldest first
        self._recover()

    def append(self, outcome: Outcome) -> None:
        """Journal one finished request (one write, no fsync)."""
        if self._fd is None:
            self._segment = self.dir / f"segment-{int(self._window_start * 1000)}.jsonl"
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._fd = os.open(self._segment, flags, 0o600)
        o = outcome
        line = json.dumps(
            [
                o.key_id,
                o.service_id,
                o.city,
                o.status,
                o.prompt_tokens,
                o.cached_tokens,
                o.output_tokens,
                int(o.slo_met),
                round(o.end, 4),
            ],
            separators=(",", ":"),
        )
        os.write(self._fd, (line + "\n").encode())
        self._outcomes.append(outcome)
        if len(self._outcomes) >= MAX_OUTCOMES:
            self.roll()

    def roll(self) -> Batch | None:
        """Close the segment as a batch (None when nothing was written since the last)."""
        now = self._clock()
        if self._fd is None or self._segment is None:
            self._window_start = now
            return None
        os.close(self._fd)
        batch_id = uuid.uuid4().hex
        start_ms = int(self._window_start * 1000)
        end_ms = max(start_ms + 1, int(now * 1000))  # demand needs a window longer than 0
        path = self.dir / f"batch-{batch_id}-{start_ms}-{end_ms}.jsonl"
        os.rename(self._segment, path)
        outcomes, self._outcomes = self._outcomes, []
        self._fd, self._segment, self._window_start = None, None, now
        batch = _batch(path, batch_id, self.gateway, start_ms, end_ms, outcomes)
        self.pending[batch_id] = batch
        return batch

    def done(self, batch_id: str) -> None:
        """The exchange has this batch: forget it."""
        batch = self.pending.pop(batch_id, None)
        if batch is not None:
            with contextlib.suppress(FileNotFoundError):
                batch.path.unlink()

    def quarantine(self, batch_id: str) -> Path | None:
        """The exchange refused this batch for good: keep its file aside (``refused-…``)
        for an operator, and stop sending it."""
        batch = self.pending.pop(batch_id, None)
        if batch is None:
            return None
        kept = batch.path.with_name("refused-" + batch.path.name)
        with contextlib.suppress(FileNotFoundError):
            os.rename(batch.path, kept)
        return kept

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def _recover(self) -> None:
        """Left-over segments become batches; every batch file is pending again."""
        for path in sorted(self.dir.iterdir()):
            m = _SEGMENT.match(path.name)
            if m is None:
                continue
            end_ms = max(int(m.group(1)) + 1, int(path.stat().st_mtime * 1000))
            new = self.dir / f"batch-{uuid.uuid4().hex}-{m.group(1)}-{end_ms}.jsonl"
            os.rename(path, new)
            log.info("journal: unsent segment %s is batch %s now", path.name, new.name)
        found = []
        for path in self.dir.iterdir():
            m = _BATCH.match(path.name)
            if m is not None:
                found.append((int(m.group(2)), int(m.group(3)), path, m))
        for _, _, path, m in sorted(found, key=lambda f: f[:3]):
            outcomes = _read(path)
            if not outcomes:
                path.unlink()
                continue
            start_ms, end_ms = int(m.group(2)), int(m.group(3))
            batch = _batch(path, m.group(1), self.gateway, start_ms, end_ms, outcomes)
            self.pending[batch.batch_id] = batch
        if self.pending:
            log.info("journal: %d batches to send again", len(self.pending))


def _batch(
    path: Path, batch_id: str, gateway: str, start_ms: int, end_ms: int, outcomes: list[Outcome]
) -> Batch:
    report = build_report(outcomes, batch_id, gateway, start_ms / 1000.0, end_ms / 1000.0)
    return Batch(path, report, [o.end for o in outcomes], tokens_per_key(outcomes))


def _read(path: Path) -> list[Outcome]:
    """A journal file's outcomes; a torn last line (power loss) is skipped."""
    out: list[Outcome] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            k, s, c, st, p, ch, op, met, end = json.loads(line)
            out.append(Outcome(k, s, c, st, int(p), int(ch), int(op), bool(met), float(end)))
        except (ValueError, TypeError):
            log.warning("journal: skipped a malformed line in %s", path.name)
    return out
