"""What a request is worth to a service's owner: the one valuation the clearing, the
simulator and the exchange share.

Bids have the shape of public LLM API price lists, e.g. DeepSeek's (yuan per million
tokens: input on a cache miss, input on a cache hit, output;
https://api-docs.deepseek.com/quick_start/pricing). A request with ``p`` prompt tokens,
a fraction ``h`` of them served from the prefix cache, and ``o`` output tokens is worth::

    (p·(1−h)·bid_in + p·h·bid_cached + o·bid_out) / 1e6   yuan

so long-prompt work is valued for its prefill too, not only for its output tokens.
"""

from __future__ import annotations

from suanli.market.snapshot import InferenceService

__all__ = ["request_value_cny", "value_cny_per_rps_hour"]

SECONDS_PER_HOUR = 3600.0


def request_value_cny(svc: InferenceService) -> float:
    """Yuan one request of ``svc``'s token profile is worth at its bids."""
    cached = svc.prompt_tokens * min(max(svc.cached_fraction, 0.0), 1.0)
    miss = svc.prompt_tokens - cached
    return (
        miss * svc.bid_cny_per_m_input_tokens
        + cached * svc.bid_cny_per_m_cached_input_tokens
        + svc.output_tokens * svc.bid_cny_per_m_output_tokens
    ) / 1e6


def value_cny_per_rps_hour(svc: InferenceService) -> float:
    """Yuan per hour that serving one request per second is worth."""
    return request_value_cny(svc) * SECONDS_PER_HOUR
