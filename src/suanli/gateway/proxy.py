"""One inference request through the gateway: key, body, service, limits, then replicas
in routing order — a slot on one (or a wait, or a 429), the upstream call, a retry on the
next replica when the rule allows — and the metering of how it ended.

Routing order (:mod:`suanli.gateway.routing`): the city's in-plan pools (weighted, least
loaded), its SLO-meeting fallbacks, then — only once none of those can be tried (down,
ejected, unhealthy, or failed before the first byte for this request) — the service's
other replicas, the last resorts. When the SLO-meeting replicas are merely full the
request queues for them (and gets a 429 at its deadline) rather than spill onto a last
resort: a replica beyond the SLO is there so that a failure does not become a client
error, not to absorb load the plan did not give it. ``max_attempts`` caps the replicas
actually called; one skipped (breaker open, unhealthy, ejected while waiting) costs none.

Every answer that came from a replica — streamed or not, a success or its error passed
through, or a timeout waiting for it — names it: ``x-suanli-replica`` (allocation id),
``x-suanli-pool`` and ``x-suanli-city`` (the demand city the request was routed as).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Scope

from suanli.gateway.admission import Full, queue_deadline_s
from suanli.gateway.breaker import Pass
from suanli.gateway.errors import error_response
from suanli.gateway.h1 import H1Error, H1Response
from suanli.gateway.meter import Outcome, Timing, meets_slo
from suanli.gateway.protocol import CITY_HEADER, KeyEntry, ServiceEntry
from suanli.gateway.routing import Candidate, Load, candidates
from suanli.gateway.runtime import Gateway
from suanli.gateway.state import Header, replica_headers
from suanli.gateway.upstream import (
    RelayResponse,
    SseRelay,
    StreamEnd,
    UpstreamFailure,
    Usage,
    estimate_usage,
    open_upstream,
    prefetch,
    usage_from,
)

__all__ = ["handle", "key_of"]

log = logging.getLogger("suanli.gateway")
MAX_BODY = 16 * 1024 * 1024
_CITY = CITY_HEADER.encode()


@dataclass(slots=True)
class Call:
    key: KeyEntry
    service: ServiceEntry
    city: str
    path: str  # /v1/chat/completions or /v1/completions
    body: bytes  # as forwarded
    doc: dict[str, object]  # the body parsed (for a usage estimate)
    stream: bool
    drop_usage: bool  # the gateway asked for the usage chunk, the client did not
    t0: float  # perf_counter at receipt
    queue_s: float = 0.0
    last_resort: bool = False  # sent beyond the city's routes: not meeting the SLO


def key_of(gw: Gateway, auth: str) -> KeyEntry | Response:
    """The key entry of an ``Authorization`` header, or the 401 (503 before the first
    state)."""
    if gw.view is None:
        return error_response(503, "the gateway has no state yet", "server_error", "not_ready")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(
            401,
            "give an inference key: Authorization: Bearer <key>",
            "invalid_request_error",
            "invalid_api_key",
        )
    key = gw.keys.lookup(token.strip())
    if key is None:
        return error_response(
            401, "invalid or revoked inference key", "invalid_request_error", "invalid_api_key"
        )
    return key


async def handle(gw: Gateway, scope: Scope, receive: Receive, path: str) -> Response:
    t0 = time.perf_counter()
    auth = city_header = length = None
    for k, v in scope["headers"]:
        if k == b"authorization":
            auth = v.decode("latin-1")
        elif k == _CITY:
            city_header = v.decode("utf-8", "replace")
        elif k == b"content-length":
            length = v
    key = key_of(gw, auth or "")
    if isinstance(key, Response):
        return key
    parsed = await _json_body(receive, length)
    if isinstance(parsed, Response):
        return parsed
    doc, body = parsed
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        return _bad("'model' must name the service", "model")
    assert gw.view is not None
    service = gw.view.service_for(key, model)
    if service is None:
        return error_response(
            404,
            f"the model {model!r} does not exist or this key may not use it",
            "invalid_request_error",
            "model_not_found",
            param="model",
        )
    client = scope.get("client")
    city = gw.city_of(city_header, client[0] if client else None)
    limited = gw.keys.admit(key)
    if limited is not None:
        gw.metrics.status(service.name, city, 429)
        return error_response(
            429,
            limited.message,
            limited.kind,
            "rate_limit_exceeded",
            retry_after_s=limited.retry_after_s,
        )
    call = _call(Call(key, service, city, path, body, doc, False, False, t0), doc)
    if call is None:
        return _bad("'stream_options' must be an object", "stream_options")
    return await forward(gw, call)


async def forward(gw: Gateway, call: Call) -> Response:
    """Try the candidate replicas in routing order, calling at most ``max_attempts``."""
    tried: set[str] = set()
    failure: UpstreamFailure | None = None
    failed: Candidate | None = None
    picks = gw.picks_for(call.service.id, call.city)
    svc = call.service
    attempts = 0

    def excluded(rid: str) -> bool:
        return rid in tried or not gw.breaker.usable(rid)

    while attempts < gw.config.max_attempts:
        found = candidates(svc, call.city, Load(gw.admission.in_flight, picks), excluded)
        if not found:
            break
        cand = await _slot(gw, call, found)
        if isinstance(cand, Full):
            return _rejected(gw, call, cand)
        grant = gw.breaker.acquire(cand.rid)
        if grant is None:  # ejected while this request waited: skipped, not attempted
            gw.admission.release(cand.rid)
            tried.add(cand.rid)
            continue
        attempts += 1
        picks[cand.replica.pool_id] = picks.get(cand.replica.pool_id, 0) + 1
        call.last_resort = cand.last_resort
        try:
            return await _attempt(gw, call, cand, grant)
        except UpstreamFailure as f:
            failure = f
        except Exception as exc:  # a bad endpoint in the state, a bug: not the user's fault
            log.exception("request to replica %s failed", cand.rid)
            failure = UpstreamFailure(f"gateway error: {type(exc).__name__}", retry=False)
        gw.breaker.failure(cand.rid, grant)
        gw.admission.release(cand.rid)
        tried.add(cand.rid)
        failed = cand
        if not failure.retry:
            break
    return _failed(gw, call, failure, failed)


async def _slot(gw: Gateway, call: Call, found: list[Candidate]) -> Candidate | Full:
    """A slot on the first of ``found`` that meet the SLO with one free, else the wait
    for one of them; the last resorts only when no SLO-meeting replica is left at all
    (full is not failed: spilling beyond the SLO is for failure only)."""
    near = [c for c in found if not c.last_resort] or found
    cand = gw.admission.try_acquire(near)
    if cand is not None:
        return cand
    svc = call.service
    queued_at = time.perf_counter()
    wait = queue_deadline_s(
        svc.ttft_ms, svc.server_ttft_ms, near[0].rtt_ms, gw.config.queue_floor_s
    )
    try:
        cand = await gw.admission.acquire(near, wait)
    except Full as full:
        return full
    call.queue_s += time.perf_counter() - queued_at
    return cand


def _failed(
    gw: Gateway, call: Call, failure: UpstreamFailure | None, failed: Candidate | None
) -> Response:
    """The error when no replica answered: 503 when none is left to try, else the
    failure that may not be retried (naming the replica that failed)."""
    if failure is None or failure.retry:  # nothing left to try
        call.last_resort = False  # no replica answered it, in or beyond the SLO
        status, code = 503, "no_replica"
        message = "no replica of this service is reachable now"
        if failure is not None:
            message += f" (last: {failure})"
    else:
        status, code, message = failure.status, "upstream_failed", str(failure)
    _record(gw, call, "error", status, None, Timing(time.perf_counter() - call.t0, call.queue_s))
    response = error_response(status, message, "upstream_error", code)
    if failure is not None and not failure.retry and failed is not None:
        response.raw_headers.extend(_headers(gw, call, failed))
    return response


def _headers(gw: Gateway, call: Call, cand: Candidate) -> list[Header]:
    """The headers that name the replica, its pool and the demand city."""
    pair = gw.view.headers.get(cand.rid) if gw.view is not None else None
    return [*(pair or replica_headers(cand.replica)), (_CITY, call.city.encode())]


async def _attempt(gw: Gateway, call: Call, cand: Candidate, grant: Pass) -> Response:
    assert gw.pool is not None
    resp, content = await open_upstream(
        gw.pool, cand.replica.endpoint, call.path, call.body, stream=call.stream
    )
    is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
    if not call.stream or resp.status != 200 or not is_sse:
        if call.stream and resp.status == 200:  # a replica that did not stream after all
            try:
                content = await resp.read()
            except H1Error as exc:
                msg = f"the replica dropped the answer: {exc}"
                raise UpstreamFailure(msg, retry=True) from exc
        return _plain(gw, call, cand, grant, resp, content)
    first = await prefetch(resp)

    def on_end(end: StreamEnd) -> None:
        relay = end.relay
        if end.complete and not relay.error:
            status, replica_ok = "ok", True
        elif end.replica_failed:
            status, replica_ok = "error", False
        elif end.client_left:
            status, replica_ok = "aborted", None
        else:
            status, replica_ok = "error", None
        ttft = relay.first - call.t0 if relay.first is not None else None
        timing = Timing(time.perf_counter() - call.t0, call.queue_s, ttft, relay.tpot)
        _settle(gw, cand, grant, replica_ok)
        _record(gw, call, status, 200, _stream_usage(gw, call, relay, status == "ok"), timing)

    return RelayResponse(resp, first, SseRelay(call.drop_usage), on_end, _headers(gw, call, cand))


def _stream_usage(gw: Gateway, call: Call, relay: SseRelay, finished: bool) -> Usage:
    """The engine's usage; without it, a finished stream's estimate (counted), or what a
    stream cut short was seen to send."""
    if relay.usage is not None:
        return relay.usage
    if not finished:
        return Usage(output=relay.chunks)
    gw.metrics.inc(gw.metrics.usage_estimated, call.service.name, call.city)
    return estimate_usage(call.doc, relay.chunks)


def _plain(
    gw: Gateway, call: Call, cand: Candidate, grant: Pass, resp: H1Response, content: bytes
) -> Response:
    status = resp.status
    usage = None
    if status == 200:
        try:
            usage = usage_from(json.loads(content))
        except ValueError:
            usage = None
    outcome = "ok" if status < 400 else "aborted" if status < 500 else "error"
    _settle(gw, cand, grant, status < 500)
    _record(gw, call, outcome, status, usage, Timing(time.perf_counter() - call.t0, call.queue_s))
    headers = (
        {"content-encoding": resp.headers["content-encoding"]}
        if ("content-encoding" in resp.headers)
        else None
    )
    media = resp.headers.get("content-type") or "application/json"
    response = Response(content, status_code=status, headers=headers, media_type=media)
    response.raw_headers.extend(_headers(gw, call, cand))
    return response


def _settle(gw: Gateway, cand: Candidate, grant: Pass, replica_ok: bool | None) -> None:
    gw.admission.release(cand.rid)
    if replica_ok is True:
        gw.breaker.success(cand.rid, grant)
    elif replica_ok is False:
        gw.breaker.failure(cand.rid, grant)
    else:
        gw.breaker.release(cand.rid, grant)


def _record(
    gw: Gateway, call: Call, status: str, http_status: int, usage: Usage | None, timing: Timing
) -> None:
    """Metrics, journal and the key's daily count for one finished request."""
    svc, city, u = call.service, call.city, usage or Usage()
    m = gw.metrics
    m.status(svc.name, city, http_status)
    m.finished(svc.name, city, timing)
    m.counted(svc.name, city, u.prompt, u.cached, u.output)
    if call.last_resort:  # its round trip from the city breaks the SLO, whatever we saw
        m.inc(m.slo_fallback, svc.name, city)
        met = False
    else:
        met = status == "ok" and meets_slo(timing, u.output, svc.ttft_ms, svc.tpot_ms, call.stream)
    if gw.journal is not None:
        gw.journal.append(
            Outcome(call.key.id, svc.id, city, status, u.prompt, u.cached, u.output, met, gw.wall())
        )
    gw.keys.metered(call.key.id, u.prompt + u.output)


def _rejected(gw: Gateway, call: Call, full: Full) -> Response:
    call.queue_s += full.waited_s
    svc = call.service
    gw.metrics.status(svc.name, call.city, 429)
    gw.metrics.queue.labels(svc.name, call.city).observe(full.waited_s)
    if gw.journal is not None:
        gw.journal.append(
            Outcome(call.key.id, svc.id, call.city, "rejected", 0, 0, 0, False, gw.wall())
        )
    return error_response(
        429,
        f"{svc.name} is at capacity; try again shortly",
        "server_overloaded",
        "capacity_exceeded",
        retry_after_s=full.retry_after_s,
    )


async def _json_body(
    receive: Receive, length: bytes | None
) -> tuple[dict[str, object], bytes] | Response:
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        return error_response(413, "the request body is too large", "invalid_request_error", None)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return error_response(400, "the client went away", "invalid_request_error", None)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return error_response(
                413, "the request body is too large", "invalid_request_error", None
            )
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return _bad("the request body is not valid JSON", None)
    if not isinstance(doc, dict):
        return _bad("the request body must be a JSON object", None)
    return doc, body


def _call(call: Call, doc: dict[str, object]) -> Call | None:
    """``call`` as sent on: a stream asks the replica for its usage chunk (the body is
    forwarded unchanged otherwise); None when ``stream_options`` is malformed."""
    call.stream = doc.get("stream") is True
    if call.stream:
        opts = doc.get("stream_options")
        if opts is not None and not isinstance(opts, dict):
            return None
        if not (isinstance(opts, dict) and opts.get("include_usage") is True):
            doc["stream_options"] = {**(opts or {}), "include_usage": True}
            call.body = json.dumps(doc, separators=(",", ":")).encode()
            call.drop_usage = True
    return call


def _bad(message: str, param: str | None) -> Response:
    return error_response(400, message, "invalid_request_error", None, param=param)
