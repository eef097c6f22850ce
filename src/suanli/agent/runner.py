"""The site agent: runs placed work on the site's backend and tells the exchange.

One loop, a step every ``poll_interval_s``::

    register      (first, and again whenever the exchange fences the session)
    heartbeat     every interval the exchange gives; answers with stop orders
    poll          each held job's backend state → reports (running, succeeded, failed)
    lease         placed work on this site's pools → WorkSpecs → backend.submit
    flush         send queued reports, in order, each under its own Idempotency-Key

Work runs only while the exchange hears this agent: when no registration, heartbeat or
lease has been answered for the exchange's heartbeat timeout (``contact``), the exchange
has taken the site down and placed the work again elsewhere, so the agent stops it too —
within one poll of the timeout — instead of running it twice, unmetered.

Everything the agent holds and every report it has not yet delivered is in its journal
(``journal``), so a restarted agent carries on: Slurm and Ray jobs are picked up again by
their handles; ``local`` jobs died with the old agent (unsandboxed leftovers are found by
their environment and stopped), so the restarted agent no longer holds them and the
exchange, at registration, bills them to the last heartbeat and places them again, to
resume from their checkpoints. At registration the agent tells the exchange what it holds;
work that was moved away while it was gone comes back as stop orders and is killed.
Replicas outlive their billing horizons by handover (``replicas``).

The agent never imports FastAPI or SQLAlchemy: it is an HTTP client of the exchange.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from suanli import __version__
from suanli.agent.backend import (
    Backend,
    BackendError,
    BackendUnavailable,
    JobState,
    JobStatus,
    SubmitRefused,
    Usage,
)
from suanli.agent.config import NO_CONTAINERS, AgentSettings
from suanli.agent.contact import Contact
from suanli.agent.exchange import ExchangeLink, Fenced, Lease, StopOrder
from suanli.agent.journal import Held, Journal
from suanli.agent.orphans import stop_leftovers
from suanli.agent.outbox import deliver
from suanli.agent.replicas import ReplicaBook
from suanli.agent.translate import (
    DEFAULT_STOP_GRACE_S,
    end_report,
    own_usage,
    running_report,
    work_spec,
)
from suanli.errors import InvalidInput
from suanli.sdk import ApiError

__all__ = ["AgentRunner", "AgentSettings"]

log = logging.getLogger("suanli.agent")


class AgentRunner:
    """Serves one site: ``run(stop)`` until ``stop`` is set, or ``step()`` at a time."""

    def __init__(
        self,
        backend: Backend,
        link: ExchangeLink,
        settings: AgentSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.link = link
        self.settings = settings
        self._mono = monotonic
        self._wall = wall
        self.journal = Journal(settings.state_dir)
        self.replicas = ReplicaBook(
            settings.advertise_host,
            settings.replica_start_grace_s,
            settings.handover_s,
            monotonic,
        )
        self.session: str | None = None
        self._pool_models: dict[str, str] = {}  # exchange pool id → backend's GPU model
        self._next_register = self._next_lease = 0.0
        self.contact = Contact(monotonic)
        self._backoff_s = 0.0
        self._adopted = False
        self._killer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="suanli-kill")

    # --- the loop

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; errors reaching the exchange or the backend are
        logged and retried with backoff, never fatal."""
        while not stop.is_set():
            pause = self.settings.poll_interval_s
            try:
                self.step()
                self._backoff_s = 0.0
            except (ApiError, BackendUnavailable) as exc:
                # Never longer than a heartbeat interval: back within one interval of the
                # exchange's return, well before its lease on this site's work expires.
                cap_s = min(self.settings.retry_max_s, self.contact.interval_s)
                self._backoff_s = min(cap_s, max(0.5, self._backoff_s * 2))
                log.warning("%s; retrying in %.1f s", exc, self._backoff_s)
                pause = self._backoff_s
            stop.wait(pause)

    def step(self) -> None:
        self._expire()
        now = self._mono()
        if self.session is None:
            if now < self._next_register:
                return
            self._next_register = now + 1.0
            # What the last session left to say goes first: were work it stopped still
            # leased here, registering would have it offered to this agent again.
            self.flush()
            if self.journal.outbox:
                return
            self._register()
        if self.session is not None and self.contact.heartbeat_due():
            self._heartbeat()
        try:
            self._poll()
        except BackendUnavailable as exc:
            # Reports already queued still go out; the work is polled again next step.
            log.warning("%s backend unavailable: %s", self.backend.name, exc)
        if self.session is not None and self._mono() >= self._next_lease:
            self._next_lease = self._mono() + self.settings.lease_interval_s
            self._lease()
        self.flush()

    def shutdown(self, *, cancel_running: bool, flush_timeout_s: float = 10.0) -> None:
        """Stop serving. With ``cancel_running`` every held job is stopped on the backend
        and reported preempted (to run again elsewhere); without, work keeps running for
        the next agent to pick up. Queued reports are sent for up to ``flush_timeout_s``."""
        if cancel_running:
            self._preempt_all("the site's agent shut down")
        deadline = self._mono() + flush_timeout_s
        while self.journal.outbox and self._mono() < deadline:
            try:
                self.flush()
            except ApiError as exc:
                log.warning("shutdown: %s", exc)
                time.sleep(0.2)
        self._killer.shutdown(wait=True)
        self.replicas.close()
        self.journal.close()

    # --- registration and heartbeats

    def _register(self) -> None:
        if not self._adopted:
            self._adopted = True
            self._let_go_of_local()
        sent = self._mono()
        cap = self.backend.discover()
        reg = self.link.register(
            cap,
            self.backend.limitations(),
            [(h.allocation_id, h.token) for h in self.journal.held.values()],
            backend=self.backend.name,
            host=socket.gethostname(),
            version=__version__,
            city=self.settings.city,
            site_name=self.settings.site_name,
            reserve_cny_per_gpu_hour=self.settings.reserve_cny_per_gpu_hour,
            extra_limitations=[NO_CONTAINERS],
        )
        models = {p.name: p.gpu_model for p in cap.pools}
        self._pool_models = {pool_id: models[name] for name, pool_id in reg.pools.items()}
        self.session = reg.session
        self.contact.answered(sent, reg.heartbeat_interval_s, reg.heartbeat_timeout_s)
        self._next_lease = 0.0
        log.info(
            "registered site %s (%s): pools %s%s",
            reg.site_id,
            "up" if reg.site_up else "DOWN",
            ", ".join(f"{n} → {p}" for n, p in reg.pools.items()) or "none",
            "".join(f"; skipped {n}: {why}" for n, why in reg.skipped.items()),
        )
        for note in reg.notes:
            log.info("exchange: %s", note)
        self._apply_stops(reg.stop)

    def _expire(self) -> None:
        """Stop all held work once the exchange has not heard this agent for its timeout
        (``contact``): it has taken the site down and placed the work elsewhere. Reported
        preempted (the reports wait in the journal; the exchange refuses them as stale if
        it moved the work)."""
        silent_s = self.contact.expired_for_s()
        if silent_s is None or not self.journal.held:
            return
        log.warning(
            "no answer from the exchange for %.0f s (timeout %.0f s): stopping %d held "
            "work; it is placed again elsewhere",
            silent_s,
            self.contact.timeout_s,
            len(self.journal.held),
        )
        self._preempt_all(f"lost contact with the exchange for {silent_s:.0f} s: lease expired")
        self.session = None  # register again: the exchange fenced the old session

    def _preempt_all(self, reason: str) -> None:
        """Stop every held work and queue its report: preempted, for ``reason``."""
        helds = list(self.journal.held.values())
        # Stopped side by side: each may take its grace period to save a checkpoint.
        for held, usage in zip(helds, self._killer.map(self._kill, helds), strict=True):
            self._end(held, None, usage, "preempted", reason)

    def _heartbeat(self) -> None:
        assert self.session is not None
        held = self.journal.claims(self.replicas.parked_ids())
        sent = self._mono()
        try:
            reply = self.link.heartbeat(
                self.session, held, self.replicas.health(self.journal.held.values())
            )
        except Fenced as exc:
            log.warning("fenced: %s", exc)
            self.session = None
            return
        self.contact.answered(sent, reply.heartbeat_interval_s, reply.heartbeat_timeout_s)
        self._apply_stops(reply.stop)

    def _apply_stops(self, stops: tuple[StopOrder, ...]) -> None:
        for order in stops:
            held = self.journal.held.get(order.allocation_id)
            if held is None:
                continue
            what = f"{held.lease.kind} {held.lease.item_id} ({held.allocation_id})"
            if order.handover and held.handle is not None and held.reported == "running":
                # Kept in the journal while parked: a crash now still finds it.
                self.replicas.park(held)
                log.info("%s: %s; parked for the next placement", what, order.reason)
                continue
            log.info("stopping %s: %s", what, order.reason)
            self._stop(held)

    def _stop(self, held: Held) -> None:
        self.journal.drop(held.allocation_id)
        self.replicas.forget(held)
        self._killer.submit(self._kill, held)

    def _let_go_of_local(self) -> None:
        """Work of the ``local`` backend from before a restart cannot be re-attached: it
        died with the old agent (an unsandboxed leftover is stopped here). It is dropped
        before registering, so the exchange finds it unclaimed, bills it to the site's
        last heartbeat and places it again; other backends' jobs are polled again."""
        for held in list(self.journal.held.values()):
            handle = held.handle
            if handle is None or handle.backend != "local":
                continue
            stop_leftovers(handle, self._grace(held))
            self.journal.drop(held.allocation_id)
            log.info(
                "%s %s (%s) ran on the previous agent: given back to the exchange",
                held.lease.kind,
                held.lease.item_id,
                held.allocation_id,
            )

    # --- leasing and starting work

    def _lease(self) -> None:
        assert self.session is not None
        sent = self._mono()
        try:
            leases = self.link.lease(self.session, self.settings.lease_limit)
        except Fenced as exc:
            log.warning("fenced: %s", exc)
            self.session = None
            return
        self.contact.heard(sent)
        for lease in leases:
            if lease.allocation_id in self.journal.held:
                # Leased again after the lease timed out: the same work, a new token.
                self.journal.set_token(lease.allocation_id, lease.lease_token)
            elif not (lease.kind == "replica" and self._take_over(lease)):
                self._start(lease)

    def _start(self, lease: Lease) -> None:
        port = self.replicas.port_for(lease) if lease.kind == "replica" else None
        held = self.journal.hold(lease, port)
        log.info(
            "leased %s %s (%s, attempt %d): %d GPUs on %s",
            lease.kind,
            lease.item_id,
            lease.allocation_id,
            lease.attempt,
            lease.gpus,
            lease.pool_id,
        )
        if not lease.command:
            self._end(held, None, None, "failed", "no command to run; " + NO_CONTAINERS[1])
            return
        self._submit(held)

    def _take_over(self, lease: Lease) -> bool:
        """Give the running replica ``lease`` continues (parked or not yet told to stop)
        to ``lease``; False when this agent does not run it."""
        old = self.replicas.claim(lease, self.journal.held)
        if old is None or old.handle is None:
            return False
        held = self.journal.hold(lease, old.port, since_s=self._wall())
        self.journal.set_handle(lease.allocation_id, old.handle)
        self.journal.drop(old.allocation_id)
        body = running_report(lease, old.handle, self.backend.name, self.replicas.endpoint(old))
        body["reason"] = f"took over replica {old.handle.id} (placement {old.allocation_id})"[:100]
        self._queue(held, "running", body)
        log.info(
            "replica %s: %s took over %s", lease.item_id, lease.allocation_id, old.allocation_id
        )
        return True

    def _submit(self, held: Held) -> None:
        try:
            spec = work_spec(held.lease, self._pool_models.get(held.lease.pool_id), held.port)
            handle = self.backend.submit(spec)
        except (InvalidInput, SubmitRefused) as exc:
            self._end(held, None, None, "failed", f"the site refused it: {exc}")
            return
        except BackendUnavailable as exc:
            log.warning("submit %s: %s; trying again", held.lease.item_id, exc)
            return
        self.journal.set_handle(held.allocation_id, handle)

    # --- following work on the backend

    def _poll(self) -> None:
        for parked in self.replicas.expired():
            log.info("replica %s was not placed here again: stopping it", parked.lease.item_id)
            self._stop(parked)
        for held in list(self.journal.held.values()):
            if held.handle is None:
                self._submit(held)
                continue
            try:
                st = self.backend.status(held.handle)
            except BackendUnavailable:
                raise
            except BackendError as exc:
                self._end(held, None, None, "preempted", f"the backend lost it: {exc}")
                continue
            if st.state is JobState.PENDING:
                continue
            if held.reported == "placed":
                body = running_report(
                    held.lease, held.handle, self.backend.name, self.replicas.endpoint(held)
                )
                self._queue(held, "running", body)
                self.replicas.started(held.allocation_id)
            if st.state.terminal:
                try:
                    usage = self.backend.usage(held.handle)
                except BackendError as exc:
                    log.warning("usage of %s: %s", held.handle.id, exc)
                    usage = None
                self._end(held, st, usage)

    def _end(
        self,
        held: Held,
        status: JobStatus | None,
        usage: Usage | None,
        state: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Queue the report that ends ``held`` and let it go."""
        if usage is not None:
            usage = own_usage(usage, held.since_s, self._wall())
        body = end_report(held.lease, held.handle, status, usage, state=state, reason=reason)
        self._queue(held, str(body["state"]), body)
        self.journal.drop(held.allocation_id)
        self.replicas.forget(held)
        log.info(
            "%s %s ended: %s (%s)",
            held.lease.kind,
            held.lease.item_id,
            body["state"],
            body.get("reason", ""),
        )

    def _queue(self, held: Held, state: str, body: dict[str, object]) -> None:
        self.journal.queue_report(held, state, dict(body))

    def _kill(self, held: Held) -> Usage | None:
        """Stop the work on the backend (or, for local work from before a restart, its
        processes); its usage when the backend still knows it."""
        handle = held.handle
        if handle is None:
            return None
        try:
            self.backend.cancel(handle)
        except BackendError as exc:
            if handle.backend != "local":
                log.warning("cancel %s: %s", handle.id, exc)
                return None
            stop_leftovers(handle, self._grace(held))
            return None
        try:
            return self.backend.usage(handle)
        except BackendError:
            return None

    def _grace(self, held: Held) -> float:
        g = held.lease.stop_grace_s
        return DEFAULT_STOP_GRACE_S if g is None else g

    # --- reports

    def flush(self) -> None:
        """Send queued reports (``outbox``) for up to half a heartbeat interval; stop the
        work whose own report came back stale. ``ApiError`` when the exchange cannot take
        them now (they are retried with the same keys)."""
        until = self._mono() + max(0.5, self.contact.interval_s / 2)
        for held in deliver(self.journal, self.link, until, self._mono):
            self._stop(held)
