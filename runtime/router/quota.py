"""Each tenant's requests per minute, tokens per minute and concurrent requests, for the model as a whole.

Rates are token buckets, as OpenAI's own limits are: a bucket holds up to a minute's allowance and refills
continuously, so a tenant may burst its whole minute and then goes at its rate. A request takes one from the
requests bucket when it is admitted; tokens are taken as the engine produces them (`usage.py`), so a bucket may go
below zero after a long answer, and the tenant then waits until it is above zero again. Concurrent requests are
leases that a request holds while it runs; a lease outlives a router that dies holding it by at most
`lease_seconds`.

Two stores keep the buckets:
- `RedisQuota`, shared by every router replica of the model: each decision is one Lua script, atomic in Redis,
  on Redis' own clock. When Redis cannot be reached, `when_down` says what happens: `open` decides locally (each
  router enforces its share, as without Redis), `closed` refuses with 503; after a failure Redis is left alone
  for `BREAK_SECONDS`, so an outage does not cost every request a timeout.
- `LocalQuota`, in the router's memory: each of `share` router replicas enforces 1/share of every limit (a limit
  of 1 stays 1), which holds the model's limit while the load balancer spreads a tenant's requests evenly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from vif.runtime.router.errors import RouterError
from vif.runtime.shared.tenants import Limits

log = logging.getLogger(__name__)

WINDOW = 60.0  # seconds: limits are per minute
LEASE_SECONDS = 900.0  # a concurrent request's lease, in case its router dies holding it
KEY_TTL = 120  # seconds: an idle tenant's bucket is full again after WINDOW (longer after a debt), so its keys go
BREAK_SECONDS = 5.0  # after Redis failed, decisions skip it this long (no wait on a dead host for every request)


@dataclass(frozen=True)
class Decision:
    """One request's admission: whether it may go on, and what OpenAI's `x-ratelimit-*` headers report."""

    limits: Limits
    requests_left: float  # the buckets after this decision (meaningless for a limit that does not apply)
    tokens_left: float
    refused: Literal["requests", "tokens", "concurrency"] | None = None
    lease: str | None = None  # the concurrency lease to give back

    def retry_after(self) -> float:
        """Seconds until the refused request would be admitted (concurrency: a guess, as a running request
        ends when it ends)."""
        if self.refused == "requests":
            return _refill_time(1 - self.requests_left, self.limits.requests_per_minute)
        if self.refused == "tokens":
            return _refill_time(1 - self.tokens_left, self.limits.tokens_per_minute)
        return 1.0

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit headers for the limits that apply."""
        headers = {}
        for kind, limit, left in (
            ("requests", self.limits.requests_per_minute, self.requests_left),
            ("tokens", self.limits.tokens_per_minute, self.tokens_left),
        ):
            if limit is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(left)))
                headers[f"x-ratelimit-reset-{kind}"] = openai_duration(_refill_time(limit - left, limit))
        return headers

    def error(self, tenant: str) -> RouterError:
        """The 429 for a refused request, in OpenAI's shape and with `Retry-After`."""
        what = {"requests": "requests per minute", "tokens": "tokens per minute", "concurrency": "concurrent requests"}
        retry = self.retry_after()
        return RouterError(
            f"Rate limit reached for tenant {tenant!r} on {what[self.refused or 'requests']}. "
            f"Try again in {openai_duration(retry)}.",
            status=429, type="rate_limit_exceeded", code="rate_limit_exceeded",
            headers={**self.headers(), "retry-after": str(max(1, math.ceil(retry)))},
        )  # fmt: skip


def _refill_time(amount: float, per_minute: int | None) -> float:
    return max(0.0, amount) * WINDOW / per_minute if per_minute else 0.0


def openai_duration(seconds: float) -> str:
    """A duration as OpenAI's headers write it: `20ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{text}s" if minutes else f"{text}s"


class Quota(Protocol):
    async def admit(self, tenant: str, limits: Limits) -> Decision: ...

    async def charge(self, tenant: str, limits: Limits, tokens: int) -> None: ...

    async def release(self, tenant: str, decision: Decision) -> None: ...

    async def aclose(self) -> None: ...


class LocalQuota:
    """The buckets in this router's memory, each limit divided by `share` (the router replicas)."""

    def __init__(self, share: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self.clock = clock
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (tenant, kind) -> (level, at)
        self.running: defaultdict[str, int] = defaultdict(int)

    def mine(self, limits: Limits) -> Limits:
        """This router's part of `limits`."""
        part = {
            name: None if value is None else max(1, value // self.share)
            for name, value in vars(limits).items()
        }  # fmt: skip
        return Limits(**part)

    def level(self, tenant: str, kind: str, per_minute: int | None) -> float:
        if per_minute is None:
            return math.inf
        level, at = self.buckets.get((tenant, kind), (per_minute, self.clock()))
        return min(per_minute, level + (self.clock() - at) * per_minute / WINDOW)

    async def admit(self, tenant: str, limits: Limits) -> Decision:
        mine = self.mine(limits)
        requests = self.level(tenant, "requests", mine.requests_per_minute)
        tokens = self.level(tenant, "tokens", mine.tokens_per_minute)
        refused: Literal["requests", "tokens", "concurrency"] | None = None
        if requests < 1:
            refused = "requests"
        elif tokens < 1:
            refused = "tokens"
        elif mine.concurrent_requests is not None and self.running[tenant] >= mine.concurrent_requests:
            refused = "concurrency"
        if refused is None:
            requests -= 1
            self.running[tenant] += 1
        self.store(tenant, "requests", requests)
        self.store(tenant, "tokens", tokens)
        return Decision(mine, requests, tokens, refused, lease=None if refused else "local")

    def store(self, tenant: str, kind: str, level: float) -> None:
        if math.isfinite(level):
            self.buckets[(tenant, kind)] = (level, self.clock())

    async def charge(self, tenant: str, limits: Limits, tokens: int) -> None:
        """Take `tokens` (a negative number gives back what an estimate took too much)."""
        per_minute = self.mine(limits).tokens_per_minute
        if per_minute is not None:
            self.store(tenant, "tokens", min(per_minute, self.level(tenant, "tokens", per_minute) - tokens))

    async def release(self, tenant: str, decision: Decision) -> None:
        if decision.lease is not None:
            self.running[tenant] -= 1

    async def aclose(self) -> None:
        pass


# KEYS: the requests bucket, the tokens bucket, the leases (a sorted set: lease -> expiry). ARGV: requests per
# minute, tokens per minute, concurrent requests (0: no limit), the lease's id and lifetime, the keys' TTL.
# Returns what was refused ('' for nothing) and both buckets' levels, as strings (Lua numbers would be truncated).
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local function level(key, per_minute)
  if per_minute <= 0 then return 0 end
  local v = redis.call('HMGET', key, 'level', 'at')
  if not v[1] then return per_minute end
  return math.min(per_minute, tonumber(v[1]) + (now - tonumber(v[2])) * per_minute / 60)
end
local rpm, tpm, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local requests, tokens = level(KEYS[1], rpm), level(KEYS[2], tpm)
local refused = ''
if rpm > 0 and requests < 1 then refused = 'requests'
elseif tpm > 0 and tokens < 1 then refused = 'tokens'
elseif most > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= most then refused = 'concurrency' end
end
if refused == '' then
  if rpm > 0 then requests = requests - 1 end
  if most > 0 then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
    redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[5])))
  end
end
local function keep(key, level, per_minute)
  redis.call('HSET', key, 'level', level, 'at', now)
  -- until it is full again: a debt outlives the usual TTL
  redis.call('EXPIRE', key, math.max(tonumber(ARGV[6]), math.ceil((per_minute - level) * 60 / per_minute) + 1))
end
if rpm > 0 then keep(KEYS[1], requests, rpm) end
if tpm > 0 then keep(KEYS[2], tokens, tpm) end
return {refused, tostring(requests), tostring(tokens)}
"""

# KEYS: the tokens bucket. ARGV: tokens per minute, tokens to take (negative: to give back), the key's TTL.
CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local per_minute = tonumber(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = per_minute
if v[1] then level = math.min(per_minute, tonumber(v[1]) + (now - tonumber(v[2])) * per_minute / 60) end
level = math.min(per_minute, level - tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'level', level, 'at', now)
redis.call('EXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), math.ceil((per_minute - level) * 60 / per_minute) + 1))
return tostring(level)
"""


class RedisQuota:
    """The buckets in Redis, shared by every router of the model; `fallback` decides while Redis is away."""

    def __init__(
        self,
        url: str,
        scope: str,
        when_down: Literal["open", "closed"],
        fallback: LocalQuota,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`scope`: whose limits these are (the operator gives the model's namespace/name): the keys' prefix."""
        import redis.asyncio as redis  # only a router given --redis-url needs the client
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)
        # No retry: a script whose answer timed out may have run, and would count twice. A pooled connection that
        # Redis closed is found and replaced when it is taken from the pool, before a command is sent.
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self.admit_script = self.client.register_script(ADMIT)
        self.charge_script = self.client.register_script(CHARGE)
        self.scope = scope
        self.when_down = when_down
        self.fallback = fallback
        self.clock = clock
        self.down_until = 0.0  # a failure opens the breaker for BREAK_SECONDS
        self.down = False  # logged once per outage, not once per request
        self.on_error: Callable[[], None] = lambda: None  # a metric's counter, set by the app
        self.cleanups: set[asyncio.Task[None]] = set()

    def keys(self, tenant: str) -> list[str]:
        # One hash tag per tenant and scope: a tenant's three keys hash to one slot, as a Lua script needs.
        tag = f"vif:{{{self.scope}/{tenant}}}"
        return [f"{tag}:requests", f"{tag}:tokens", f"{tag}:leases"]

    def away(self) -> bool:
        return self.clock() < self.down_until

    async def admit(self, tenant: str, limits: Limits) -> Decision:
        lease = uuid.uuid4().hex
        rates = [limits.requests_per_minute or 0, limits.tokens_per_minute or 0, limits.concurrent_requests or 0]
        args: list[int | float | str] = [*rates, lease, LEASE_SECONDS, KEY_TTL]
        if self.away():
            self.on_error()
        else:
            try:
                refused, requests, tokens = await self.admit_script(keys=self.keys(tenant), args=args)
            except self.errors as exc:
                self.failed("admit", exc)
                if limits.concurrent_requests:
                    self.forget_lease(tenant, lease)  # the script may have run before its answer was lost
            else:
                self.recovered()
                return Decision(
                    limits,
                    float(requests),
                    float(tokens),
                    refused.decode() or None,  # type: ignore[arg-type]
                    lease=None if refused else (lease if limits.concurrent_requests else "none"),
                )
        if self.when_down == "closed":
            raise RouterError(
                "The rate-limit store cannot be reached, and this model refuses requests while it is away.",
                status=503, type="service_unavailable", code="quota_store_unavailable",
            )  # fmt: skip
        return await self.fallback.admit(tenant, limits)

    def forget_lease(self, tenant: str, lease: str) -> None:
        """Remove a lease the store may hold, once it answers again (or let it expire)."""

        async def forget() -> None:
            await asyncio.sleep(BREAK_SECONDS)
            with contextlib.suppress(*self.errors):
                await self.client.zrem(self.keys(tenant)[2], lease)

        task = asyncio.create_task(forget())
        self.cleanups.add(task)
        task.add_done_callback(self.cleanups.discard)

    async def charge(self, tenant: str, limits: Limits, tokens: int) -> None:
        if limits.tokens_per_minute is None or tokens == 0:
            return
        if not self.away():
            try:
                keys, args = self.keys(tenant)[1:2], [limits.tokens_per_minute, tokens, KEY_TTL]
                await self.charge_script(keys=keys, args=args)
                return
            except self.errors as exc:
                self.failed("charge", exc)
        await self.fallback.charge(tenant, limits, tokens)

    async def release(self, tenant: str, decision: Decision) -> None:
        if decision.lease == "local":
            await self.fallback.release(tenant, decision)
        elif decision.lease not in (None, "none"):
            try:
                await self.client.zrem(self.keys(tenant)[2], decision.lease)
            except self.errors as exc:
                self.failed("release", exc)  # the lease expires on its own

    def failed(self, operation: str, exc: BaseException) -> None:
        self.on_error()
        self.down_until = self.clock() + BREAK_SECONDS
        if not self.down:
            self.down = True
            log.warning("rate-limit store unreachable (%s: %s); failing %s", operation, exc, self.when_down)

    def recovered(self) -> None:
        if self.down:
            self.down = False
            log.warning("rate-limit store reachable again")

    async def aclose(self) -> None:
        for task in self.cleanups:
            task.cancel()
        await self.client.aclose()
