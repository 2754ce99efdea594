"""The websocket's per-connection rate limit, on a clock the test moves."""

from __future__ import annotations

from daemon.ws import TokenBucket


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=50.0, burst=100, clock=lambda: now[0])
    assert all(bucket.take() for _ in range(100))
    assert not bucket.take()
    now[0] += 0.25  # 12.5 tokens
    assert [bucket.take() for _ in range(13)] == [True] * 12 + [False]
    now[0] += 3600  # never more than the burst saved up
    assert sum(bucket.take() for _ in range(1000)) == 100
