"""The one retry policy for calls to the service (tenacity): a 429 (over the caller's rate) or a 503
(every upload slot taken, or the model server restarting) is asked again after the answer's
``Retry-After``, in seconds or as an HTTP-date, never longer than ``max_wait_s``, at most
``attempts`` times in all; the last answer is then returned as it is. Any other answer, and a
connection that fails, comes back at once: a refused file stays refused however often it is sent.

The client (``DeepfakeClient``) and the evaluation (through it) both call this module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_result, stop_after_attempt

RETRYABLE_STATUSES = frozenset({429, 503})
logger = logging.getLogger("deepfake_client.retry")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # the first try and 5 more, as both loops this replaced had
    default_wait_s: float = 2.0  # a 429/503 without a readable Retry-After
    max_wait_s: float = 60.0  # the service's own rate limits reset within a minute

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.default_wait_s < 0 or self.max_wait_s < 0:
            raise ValueError("attempts must be at least 1 and the waits not negative")


def retry_after_s(response: httpx.Response, policy: RetryPolicy, now: datetime | None = None) -> float:
    """How long ``response`` asks to wait: ``Retry-After`` as delay-seconds or an HTTP-date (a date
    past counts as 0), ``policy.default_wait_s`` where absent or unreadable, at most ``max_wait_s``."""
    value = response.headers.get("Retry-After", "").strip()
    wait = policy.default_wait_s
    try:
        seconds = float(value)  # RFC 9110 says an integer; a decimal is read too
    except ValueError:
        seconds = None
    if seconds is not None:
        wait = seconds if math.isfinite(seconds) and seconds >= 0 else wait
    elif value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            pass  # neither form: the default
        else:
            if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives "-0000" ones naive
                when = when.replace(tzinfo=UTC)
            wait = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return min(wait, policy.max_wait_s)


def _retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUSES


def _tenacity_options(policy: RetryPolicy) -> dict[str, Any]:
    def wait(state: RetryCallState) -> float:
        assert state.outcome is not None  # tenacity waits only after an attempt
        return retry_after_s(state.outcome.result(), policy)

    def log(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        response = state.outcome.result()
        logger.info(
            "%s %s answered %d; attempt %d of %d in %.1f s",
            response.request.method,
            response.request.url,
            response.status_code,
            state.attempt_number + 1,
            policy.attempts,
            state.next_action.sleep,
        )

    return {
        "retry": retry_if_result(_retryable),  # an exception is not retried: it propagates unchanged
        "stop": stop_after_attempt(policy.attempts),
        "wait": wait,
        "before_sleep": log,
        "retry_error_callback": lambda state: state.outcome.result(),  # out of attempts: the last answer
    }


def send_with_retry(
    send: Callable[[], httpx.Response], policy: RetryPolicy, sleep: Callable[[float], None] | None = None
) -> httpx.Response:
    """Calls ``send`` (which builds the request anew: an upload stream is read once) until its answer
    is neither 429 nor 503 or the attempts are spent. ``sleep`` replaces ``time.sleep`` (tests)."""
    extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    return Retrying(**_tenacity_options(policy), **extra)(send)


async def send_with_retry_async(
    send: Callable[[], Awaitable[httpx.Response]],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> httpx.Response:
    """``send_with_retry`` for an ``httpx.AsyncClient``; ``sleep`` replaces ``asyncio.sleep``."""
    extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}

    async def attempt() -> httpx.Response:  # a coroutine function, which tenacity awaits (``send`` may be a lambda)
        return await send()

    return await AsyncRetrying(**_tenacity_options(policy), **extra)(attempt)
