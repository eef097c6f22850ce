"""``suanli.Client``: every operation of the exchange API, for scripts and the CLI.

    from suanli import Client

    with Client("http://127.0.0.1:8000", token="sl_…") as c:
        job = c.submit({"kind": "job", "name": "ft", "command": "python train.py",
                        "resources": {"gpus": 8}, "work_ref_gpu_hours": 16,
                        "bid_cny_per_ref_gpu_hour": 12, "data": {"origin_city": "Shanghai"}})
        print(c.why(job["id"])["summary"])

Requests that create work or move money carry an ``Idempotency-Key``; the client makes
one per call and reuses it when it retries after a dropped connection, a 429 or a 5xx,
so a retry never applies twice. Errors raise :class:`ApiError` with the server's
problem document.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from suanli.errors import SuanliError

__all__ = ["ApiError", "Client", "config_path", "load_config", "save_config"]

DEFAULT_URL = "http://127.0.0.1:8000"
_RETRY_STATUS = {429, 502, 503, 504}


class ApiError(SuanliError):
    """The exchange refused a request (``status``, ``problem``) or could not be reached."""

    def __init__(self, message: str, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


def config_path() -> Path:
    """``$SUANLI_CONFIG`` or ``~/.config/suanli/config.json``."""
    env = os.environ.get("SUANLI_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "suanli" / "config.json"


def load_config() -> dict[str, str]:
    """URL and token: ``SUANLI_URL``/``SUANLI_TOKEN`` over the saved login."""
    out: dict[str, str] = {}
    path = config_path()
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SuanliError(
                f"{path}: unreadable login ({exc}); run `suanli login` again"
            ) from None
        if isinstance(data, dict):
            out.update({k: str(v) for k, v in data.items() if k in ("url", "token")})
    if os.environ.get("SUANLI_URL"):
        out["url"] = os.environ["SUANLI_URL"]
    if os.environ.get("SUANLI_TOKEN"):
        out["token"] = os.environ["SUANLI_TOKEN"]
    return out


def save_config(url: str, token: str) -> Path:
    """Save a login, readable by the user only from its first byte: written to a private
    temporary file (``mkstemp``: mode 0600) in the same folder, then renamed over the old
    one, so a reader never sees half a file or a moment of a wider mode."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"url": url, "token": token}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class Client:
    """A connection to one exchange as one account. Methods return parsed JSON."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport
        )

    @classmethod
    def from_config(cls) -> Client:
        """A client for the saved login (see :func:`load_config`)."""
        cfg = load_config()
        if "token" not in cfg:
            raise SuanliError("not logged in: run `suanli login --url URL --token TOKEN`")
        return cls(cfg.get("url", DEFAULT_URL), cfg["token"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- transport ----------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = False,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one request; retried (with the same Idempotency-Key) when it is safe.

        ``idempotency_key`` sets the key (implies ``idempotent``): a caller that retries
        across calls (an agent's outbox) reuses its own key so the exchange applies once.
        """
        idempotent = idempotent or idempotency_key is not None
        key = idempotency_key or uuid.uuid4().hex
        headers = {"Idempotency-Key": key} if idempotent else {}
        may_retry = method == "GET" or idempotent
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not may_retry
            try:
                resp = self._http.request(
                    method, path, json=json_body, params=clean, headers=headers
                )
            except httpx.TransportError as exc:
                if last:
                    raise ApiError(f"cannot reach the exchange at {self.url}: {exc}") from None
                time.sleep(0.2 * 2**attempt)
                continue
            if resp.status_code in _RETRY_STATUS and not last:
                wait = resp.headers.get("retry-after", "")
                time.sleep(min(5.0, float(wait)) if wait.isdigit() else 0.2 * 2**attempt)
                continue
            return self._parse(resp)
        raise AssertionError("unreachable")

    @staticmethod
    def _parse(resp: httpx.Response) -> Any:
        if (resp.status_code == 204 or not resp.content) and resp.is_success:
            return None
        if resp.is_success and resp.headers.get("content-type", "").startswith("text/csv"):
            return resp.text
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.is_success:
            return body
        if isinstance(body, dict) and "detail" in body:
            detail = body["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail)
            fields = [
                f"{e['field']}: {e['reason']}"
                for e in body.get("errors") or []
                if isinstance(e, dict) and e.get("field") and e.get("reason")
            ]
            if fields:
                message = "\n  ".join(["invalid request:", *fields])
        else:
            message = resp.text[:500] or resp.reason_phrase
        raise ApiError(f"{resp.status_code}: {message}", resp.status_code, body)

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def _post(self, path: str, body: Any = None, *, idempotent: bool = False) -> Any:
        return self.request(
            "POST", path, json_body=body if body is not None else {}, idempotent=idempotent
        )

    # ----- accounts -----------------------------------------------------------------------
    def me(self) -> Any:
        return self._get("/v1/me")

    def wallet(self, tenant_id: str | None = None) -> Any:
        return self._get("/v1/wallet", tenant_id=tenant_id)

    def create_tenant(self, name: str, accounts: list[Mapping[str, str]]) -> Any:
        """Operators: a tenant with accounts (``{"name", "role"}``); tokens shown once."""
        return self._post("/v1/tenants", {"name": name, "accounts": list(accounts)})

    def tenants(self) -> Any:
        return self._get("/v1/tenants")

    def deposit(self, tenant_id: str, amount_fen: int, memo: str = "") -> Any:
        return self._post(
            f"/v1/tenants/{tenant_id}/deposits",
            {"amount_fen": amount_fen, "memo": memo},
            idempotent=True,
        )

    def create_token(self, label: str | None = None, expires_in_days: int | None = None) -> Any:
        """A new token for this account (shown once, in ``token``); None: never expires."""
        body: dict[str, Any] = {}
        if label:
            body["label"] = label
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self._post("/v1/tokens", body)

    def tokens(self) -> Any:
        """This account's live tokens (``current`` marks the one in use)."""
        return self._get("/v1/tokens")

    def revoke_token(self, token_id: str) -> None:
        """Revoke one of this account's tokens; refused from the next request on."""
        self.request("DELETE", f"/v1/tokens/{token_id}")

    # ----- work ---------------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any]) -> Any:
        """Submit a job or a service spec (by its ``kind``, or ``model`` for services)."""
        kind = spec.get("kind") or ("service" if "model" in spec else "job")
        if kind == "service":
            return self.submit_service(spec)
        if kind == "job":
            return self.submit_job(spec)
        raise SuanliError(f"unknown kind {kind!r}: use 'job' or 'service'")

    def submit_job(self, spec: Mapping[str, Any]) -> Any:
        return self._post("/v1/jobs", dict(spec), idempotent=True)

    def submit_service(self, spec: Mapping[str, Any]) -> Any:
        return self._post("/v1/services", dict(spec), idempotent=True)

    def jobs(self, state: str | None = None, limit: int = 100) -> Any:
        return self._get("/v1/jobs", state=state, limit=limit)

    def job(self, job_id: str) -> Any:
        return self._get(f"/v1/jobs/{job_id}")

    def services(self, state: str | None = None, limit: int = 100) -> Any:
        return self._get("/v1/services", state=state, limit=limit)

    def service(self, service_id: str) -> Any:
        return self._get(f"/v1/services/{service_id}")

    def get(self, item_id: str) -> Any:
        """A job or a service by id."""
        return self.service(item_id) if item_id.startswith("svc-") else self.job(item_id)

    def cancel(self, item_id: str) -> Any:
        """Cancel a job or stop a service."""
        if item_id.startswith("svc-"):
            return self._post(f"/v1/services/{item_id}/stop", idempotent=True)
        return self._post(f"/v1/jobs/{item_id}/cancel", idempotent=True)

    def why(self, item_id: str) -> Any:
        kind = "services" if item_id.startswith("svc-") else "jobs"
        return self._get(f"/v1/{kind}/{item_id}/why")

    def events(self, job_id: str) -> Any:
        return self._get(f"/v1/jobs/{job_id}/events")

    # ----- serving ------------------------------------------------------------------------
    def update_service(self, service_id: str, patch: Mapping[str, Any]) -> Any:
        """Change a service's demand_rps, bids, slo, tokens or replicas (only the fields
        in ``patch``)."""
        return self.request(
            "PATCH", f"/v1/services/{service_id}", json_body=dict(patch), idempotent=True
        )

    def stop_service(self, service_id: str) -> Any:
        """Stop a service: its replicas are billed for the time they ran, then freed."""
        return self._post(f"/v1/services/{service_id}/stop", idempotent=True)

    def service_traffic(self, service_id: str, minutes: int = 60) -> Any:
        """Measured traffic per demand city over the last ``minutes``, with SLO attainment
        and where the replicas serve from."""
        return self._get(f"/v1/services/{service_id}/traffic", minutes=minutes)

    def create_key(
        self,
        service_id: str,
        name: str,
        *,
        rpm: int | None = None,
        tokens_per_day: int | None = None,
    ) -> Any:
        """An inference key for a service's users; the key is in ``key``, shown once (None
        if a retry got the stored answer: revoke that key and create another)."""
        body: dict[str, Any] = {"name": name, "rpm": rpm, "tokens_per_day": tokens_per_day}
        return self._post(f"/v1/services/{service_id}/keys", body, idempotent=True)

    def list_keys(self, service_id: str | None = None, *, include_revoked: bool = False) -> Any:
        """Your inference keys (of one service), never the keys themselves."""
        flag = "true" if include_revoked else None
        return self._get("/v1/keys", service_id=service_id, include_revoked=flag)

    def revoke_key(self, key_id: str) -> None:
        """Revoke an inference key; gateways refuse it at once. Revoking twice is fine."""
        self.request("DELETE", f"/v1/keys/{key_id}", idempotent=True)

    def token_usage(
        self,
        *,
        service_id: str | None = None,
        key_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        group_by: str = "service",
        csv: bool = False,
        tenant_id: str | None = None,
    ) -> Any:
        """Metered tokens summed per ``group_by`` (service, key, city, day) over usage
        windows ending in ``[since, until)`` (ISO 8601): a list of rows, or the CSV text
        with ``csv=True``."""
        return self._get(
            "/v1/token-usage",
            service_id=service_id,
            key_id=key_id,
            since=since,
            until=until,
            group_by=group_by,
            format="csv" if csv else None,
            tenant_id=tenant_id,
        )

    # ----- market -------------------------------------------------------------------------
    def prices(self, pool_id: str | None = None, limit: int = 100) -> Any:
        return self._get("/v1/market/prices", pool_id=pool_id, limit=limit)

    def rounds(self, limit: int = 20) -> Any:
        return self._get("/v1/market/rounds", limit=limit)

    def clear_now(self) -> Any:
        """Operators: run a clearing round now."""
        return self._post("/v1/market/rounds")

    # ----- vouchers, billing --------------------------------------------------------------
    def vouchers(self) -> Any:
        return self._get("/v1/vouchers")

    def create_voucher(self, **program: Any) -> Any:
        """Operators: a voucher program (name, coverage, budget_fen, …)."""
        return self._post("/v1/vouchers", program, idempotent=True)

    def grant(self, program_id: str, tenant_id: str, amount_fen: int) -> Any:
        return self._post(
            f"/v1/vouchers/{program_id}/grants",
            {"tenant_id": tenant_id, "amount_fen": amount_fen},
            idempotent=True,
        )

    def redeem(self, program_id: str) -> Any:
        return self._post(f"/v1/vouchers/{program_id}/redeem", idempotent=True)

    def invoices(self) -> Any:
        return self._get("/v1/invoices")

    def create_invoice(self) -> Any:
        return self._post("/v1/invoices", {}, idempotent=True)

    def usage(self, limit: int = 100) -> Any:
        return self._get("/v1/usage", limit=limit)

    def allocations(self, active: bool | None = None, limit: int = 100) -> Any:
        return self._get("/v1/allocations", active=active, limit=limit)

    # ----- sellers and agents -------------------------------------------------------------
    def create_site(self, **site: Any) -> Any:
        return self._post("/v1/sites", site)

    def create_pool(self, **pool: Any) -> Any:
        return self._post("/v1/pools", pool)

    def create_offer(self, **offer: Any) -> Any:
        return self._post("/v1/offers", offer)

    def lease(self, site_id: str | None = None, limit: int = 100) -> Any:
        body: dict[str, Any] = {"limit": limit}
        if site_id:
            body["site_id"] = site_id
        return self._post("/v1/agent/leases", body)

    def report(
        self,
        job_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        gpu_hours: float | None = None,
        reason: str | None = None,
    ) -> Any:
        body: dict[str, Any] = {"job_id": job_id, "state": state}
        for k, v in (("exit_code", exit_code), ("gpu_hours", gpu_hours), ("reason", reason)):
            if v is not None:
                body[k] = v
        return self._post("/v1/agent/reports", body, idempotent=True)
