"""Token buckets per tenant in the router's memory (`LocalQuota`), and OpenAI's rate-limit headers; the same
buckets in Redis are tested against a real server in integration/test_tenants.py."""

from __future__ import annotations

import pytest

from vif.runtime.router.quota import Decision, LocalQuota, openai_duration
from vif.runtime.shared.tenants import Limits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_tenant_bursts_its_minute_then_goes_at_its_rate() -> None:
    clock = Clock()
    quota = LocalQuota(clock=clock)
    limits = Limits(requests_per_minute=3)
    decisions = [await quota.admit("a", limits) for _ in range(4)]
    assert [d.refused for d in decisions] == [None, None, None, "requests"]
    assert decisions[3].retry_after() == pytest.approx(20.0)  # one request's worth at 3 a minute
    clock.now += 20
    assert (await quota.admit("a", limits)).refused is None
    assert (await quota.admit("b", limits)).refused is None  # another tenant has buckets of its own


async def test_tokens_are_charged_after_the_fact_and_a_debt_is_waited_out() -> None:
    clock = Clock()
    quota = LocalQuota(clock=clock)
    limits = Limits(tokens_per_minute=600)
    assert (await quota.admit("a", limits)).refused is None
    await quota.charge("a", limits, 900)  # a long answer takes the bucket below zero
    refused = await quota.admit("a", limits)
    assert refused.refused == "tokens" and refused.tokens_left == pytest.approx(-300)
    assert refused.retry_after() == pytest.approx(30.1)  # back to one token: 301 tokens at 10 a second
    clock.now += 31
    assert (await quota.admit("a", limits)).refused is None


async def test_tokens_given_back_never_fill_a_bucket_past_its_minute() -> None:
    quota = LocalQuota()
    limits = Limits(tokens_per_minute=600)
    await quota.charge("a", limits, 100)
    await quota.charge("a", limits, -500)  # an estimate that took too much
    assert (await quota.admit("a", limits)).tokens_left == pytest.approx(600, abs=1)


async def test_concurrent_requests_are_given_back_on_release() -> None:
    quota = LocalQuota()
    limits = Limits(concurrent_requests=2)
    first, second = await quota.admit("a", limits), await quota.admit("a", limits)
    assert (await quota.admit("a", limits)).refused == "concurrency"
    await quota.release("a", first)
    assert (await quota.admit("a", limits)).refused is None
    await quota.release("a", second)


async def test_each_of_several_routers_enforces_its_share() -> None:
    quota = LocalQuota(share=3)
    assert quota.mine(Limits(10, 3000, 1)) == Limits(3, 1000, 1)  # a limit of 1 stays 1
    decisions = [await quota.admit("a", Limits(requests_per_minute=10)) for _ in range(4)]
    assert [d.refused for d in decisions] == [None, None, None, "requests"]


def test_the_headers_are_openais() -> None:
    decision = Decision(Limits(requests_per_minute=60, tokens_per_minute=1000), 58.5, 400.0)
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "58",
        "x-ratelimit-reset-requests": "1.5s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "400",
        "x-ratelimit-reset-tokens": "36s",
    }
    assert Decision(Limits(concurrent_requests=1), 0, 0).headers() == {}  # no rate: nothing to count down


def test_a_refusal_is_a_429_in_openais_shape_with_retry_after() -> None:
    error = Decision(Limits(requests_per_minute=2), 0.25, 0, refused="requests").error("search")
    assert error.status == 429 and error.type == error.code == "rate_limit_exceeded"
    assert error.headers["retry-after"] == "23"  # 0.75 of a request at 2 a minute: 22.5 s, rounded up
    assert "'search'" in error.message and "requests per minute" in error.message


@pytest.mark.parametrize(
    ("seconds", "written"), [(0.0201, "21ms"), (1.5, "1.5s"), (360, "6m0s"), (61.25, "1m1.25s"), (0, "0ms")]
)
def test_durations_are_written_as_openai_writes_them(seconds: float, written: str) -> None:
    assert openai_duration(seconds) == written
