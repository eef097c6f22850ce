"""What an agent holds, kept on disk so that a restarted agent knows its work.

An append-only JSON-lines file in the agent's state directory; each line is one change::

    {"op": "hold",   "lease": {...}, "port": 8123 | null,    a lease accepted (``since``:
                     "since": 1.7e9 | null}                  when it took a replica over)
    {"op": "handle", "alloc": "...", "handle": {...}}        submitted to the backend
    {"op": "state",  "alloc": "...", "state": "running"}     a state reported (queued)
    {"op": "token",  "alloc": "...", "token": "..."}         the same work leased again
    {"op": "drop",   "alloc": "..."}                         no longer held
    {"op": "report", "key": "...", "body": {...}}            a report to send (outbox)
    {"op": "sent",   "key": "..."}                           the exchange has it

Replaying the lines gives the held work and the reports still to send; opening the file
rewrites it compacted. Reports are frozen when queued (the body never changes), so a
retry under the same Idempotency-Key is the same request. One agent per state directory:
the file is locked while open.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from suanli.agent.backend import Handle
from suanli.agent.exchange import Lease
from suanli.errors import InvalidInput

__all__ = ["Held", "Journal", "Outgoing"]

FILE = "journal.jsonl"
COMPACT_AFTER = 10_000  # appended lines beyond the state's own before a rewrite


@dataclass
class Held:
    """One lease the agent holds: its work, the backend's handle once submitted, the last
    state queued for the exchange ("placed", "running"), a replica's port, and when this
    lease took over a replica already running (Unix s; its usage counts from then)."""

    lease: Lease
    handle: Handle | None = None
    reported: str = "placed"
    port: int | None = None
    since_s: float | None = None

    @property
    def allocation_id(self) -> str:
        return self.lease.allocation_id

    @property
    def token(self) -> str:
        return self.lease.lease_token


@dataclass(frozen=True, slots=True)
class Outgoing:
    key: str
    body: dict[str, Any]


class Journal:
    """The held work and the outbox, mirrored to ``<state_dir>/journal.jsonl``."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = state_dir / FILE
        self.held: dict[str, Held] = {}
        self.outbox: dict[str, Outgoing] = {}  # insertion order is sending order
        self._lock = os.fdopen(_private(state_dir / "agent.lock", os.O_APPEND), "ab")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise InvalidInput(
                f"another agent is running with state directory {state_dir}"
            ) from None
        if self.path.exists():
            self._replay(self.path.read_text(encoding="utf-8"))
        self._appended = 0
        self._file: IO[str] = self._compact()

    # --- changes (each appended and flushed before it counts)

    def hold(self, lease: Lease, port: int | None = None, since_s: float | None = None) -> Held:
        held = Held(lease=lease, port=port, since_s=since_s)
        self.held[lease.allocation_id] = held
        self._append({"op": "hold", "lease": lease.to_json(), "port": port, "since": since_s})
        return held

    def set_handle(self, alloc: str, handle: Handle) -> None:
        self.held[alloc].handle = handle
        self._append({"op": "handle", "alloc": alloc, "handle": _handle_json(handle)})

    def set_token(self, alloc: str, token: str) -> None:
        held = self.held[alloc]
        held.lease = _with_token(held.lease, token)
        self._append({"op": "token", "alloc": alloc, "token": token})

    def queue_report(self, held: Held, state: str, body: dict[str, Any]) -> None:
        """Queue a report (frozen now) and remember that ``state`` was reported."""
        key = f"{held.allocation_id}.{held.token}.{state}"
        self.outbox[key] = Outgoing(key, body)
        held.reported = state
        self._append({"op": "report", "key": key, "body": body})
        self._append({"op": "state", "alloc": held.allocation_id, "state": state})

    def sent(self, key: str) -> None:
        self.outbox.pop(key, None)
        self._append({"op": "sent", "key": key})

    def drop(self, alloc: str) -> None:
        self.held.pop(alloc, None)
        self._append({"op": "drop", "alloc": alloc})

    def claims(self, parked: set[str]) -> list[tuple[str, str]]:
        """(allocation, lease token) of the work this agent still speaks for, for a
        heartbeat: what it holds, but ``parked`` replicas, and work whose end is queued
        but not yet delivered — so the exchange never offers that again meanwhile."""
        out = [(a, h.token) for a, h in self.held.items() if a not in parked]
        seen = {a for a, _ in out} | parked
        for item in self.outbox.values():
            alloc, token = item.body.get("allocation_id"), item.body.get("lease_token")
            if isinstance(alloc, str) and isinstance(token, str) and alloc not in seen:
                seen.add(alloc)
                out.append((alloc, token))
        return out

    def close(self) -> None:
        self._file.close()
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
        self._lock.close()

    # --- internals

    def _append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self._appended += 1
        # Rewrite once the history outweighs the state, so the file tracks what is held.
        if self._appended > COMPACT_AFTER + 4 * (len(self.held) + len(self.outbox)):
            self._file.close()
            self._file = self._compact()

    def _replay(self, text: str) -> None:
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: everything before it stands
            self._apply(rec)

    def _apply(self, rec: dict[str, Any]) -> None:
        op = rec.get("op")
        if op == "hold":
            lease = Lease.from_json(rec["lease"])
            self.held[lease.allocation_id] = Held(
                lease=lease, port=rec.get("port"), since_s=rec.get("since")
            )
        elif op == "handle" and rec["alloc"] in self.held:
            self.held[rec["alloc"]].handle = _handle_of(rec["handle"])
        elif op == "state" and rec["alloc"] in self.held:
            self.held[rec["alloc"]].reported = str(rec["state"])
        elif op == "token" and rec["alloc"] in self.held:
            held = self.held[rec["alloc"]]
            held.lease = _with_token(held.lease, str(rec["token"]))
        elif op == "drop":
            self.held.pop(rec["alloc"], None)
        elif op == "report":
            self.outbox[rec["key"]] = Outgoing(str(rec["key"]), dict(rec["body"]))
        elif op == "sent":
            self.outbox.pop(rec["key"], None)

    def _compact(self) -> IO[str]:
        tmp = self.path.with_suffix(".tmp")
        # Leases carry tokens and commands: the file is the owner's alone from its first
        # byte (the rename keeps the mode; appends reopen the same file).
        with os.fdopen(_private(tmp, os.O_TRUNC), "w", encoding="utf-8") as f:
            for held in self.held.values():
                lines: list[dict[str, Any]] = [
                    {
                        "op": "hold",
                        "lease": held.lease.to_json(),
                        "port": held.port,
                        "since": held.since_s,
                    }
                ]
                if held.handle is not None:
                    lines.append(
                        {
                            "op": "handle",
                            "alloc": held.allocation_id,
                            "handle": _handle_json(held.handle),
                        }
                    )
                lines.append({"op": "state", "alloc": held.allocation_id, "state": held.reported})
                for rec in lines:
                    f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            for out in self.outbox.values():
                rec = {"op": "report", "key": out.key, "body": out.body}
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        self._appended = 0
        return self.path.open("a", encoding="utf-8")


def _private(path: Path, flags: int) -> int:
    """A descriptor open for writing on ``path``, created or narrowed to mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _handle_json(h: Handle) -> dict[str, Any]:
    return {
        "backend": h.backend,
        "id": h.id,
        "work_id": h.work_id,
        "attempt": h.attempt,
        "gpus": h.gpus,
        "run_dir": str(h.run_dir) if h.run_dir is not None else None,
    }


def _handle_of(d: dict[str, Any]) -> Handle:
    return Handle(
        backend=str(d["backend"]),
        id=str(d["id"]),
        work_id=str(d["work_id"]),
        attempt=int(d["attempt"]),
        gpus=int(d["gpus"]),
        run_dir=Path(d["run_dir"]) if d.get("run_dir") else None,
    )


def _with_token(lease: Lease, token: str) -> Lease:
    return replace(lease, lease_token=token)
