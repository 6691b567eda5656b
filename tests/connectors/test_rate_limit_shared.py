"""The request-rate cap shared through Redis by every worker, and its fallback to a per-process cap."""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing

import pytest
import redis

from connectors.client import RateLimiter, SharedRateLimiter
from connectors.selectors import connector_instance
from tests.factories import ToolConnectionFactory

JIRA_CREDENTIALS = {"email": "bot@example.test", "api_token": "not-a-real-token"}


@pytest.fixture
def redis_url():
    return os.environ["VSM_CELERY_BROKER_URL"]


@pytest.fixture
def bucket_key(redis_url):
    key = f"vsm:rate:test-{uuid.uuid4().hex}"
    yield key
    redis.Redis.from_url(redis_url).delete(key)


def assert_spaced(times: list[float], rate: float):
    """Over any `rate` consecutive acquires, about a second passes (a late wake-up may shave a little)."""
    times = sorted(times)
    assert times[-1] - times[0] >= (len(times) - 1) / rate - 0.1
    for earlier, later in zip(times, times[int(rate) :], strict=False):
        assert later - earlier >= 0.85


@pytest.mark.needs_redis
def test_the_script_lets_a_burst_through_then_queues_callers_evenly(redis_url, bucket_key):
    sleeps = []
    limiter = SharedRateLimiter(redis_url, bucket_key, rate=2, burst=2, sleep=sleeps.append)

    for _ in range(5):
        limiter.acquire()

    # Nobody really slept, so each caller reserved the slot after the previous one.
    assert sleeps == pytest.approx([0.5, 1.0, 1.5], abs=0.05)
    ttl = redis.Redis.from_url(redis_url).pttl(bucket_key)
    assert 0 < ttl <= 3_500  # the key goes once the bucket is full again


@pytest.mark.needs_redis
def test_the_bucket_refills_while_idle(redis_url, bucket_key):
    sleeps = []
    limiter = SharedRateLimiter(redis_url, bucket_key, rate=20, burst=1, sleep=sleeps.append)

    limiter.acquire()
    time.sleep(0.1)  # two intervals idle: only one token comes back (the burst)
    limiter.acquire()
    limiter.acquire()

    assert sleeps == pytest.approx([0.05], abs=0.02)


@pytest.mark.needs_redis
def test_threads_with_limiters_of_their_own_share_one_rate(redis_url, bucket_key):
    times = []

    def acquire_ten():
        limiter = SharedRateLimiter(redis_url, bucket_key, rate=10)
        for _ in range(10):
            limiter.acquire()
            times.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=acquire_ten) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(times) == 30
    assert time.monotonic() - started >= 2.85
    assert_spaced(times, rate=10)


CHILD = """
import json, sys, time
from connectors.client import SharedRateLimiter
limiter = SharedRateLimiter(sys.argv[1], sys.argv[2], rate=10)
times = []
for _ in range(15):
    limiter.acquire()
    times.append(time.time())
print(json.dumps(times))
"""


@pytest.mark.needs_redis
def test_processes_share_one_rate(redis_url, bucket_key, settings):
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_url, bucket_key],
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    per_child = [json.loads(child.communicate(timeout=60)[0]) for child in children]

    assert all(child.returncode == 0 for child in children)
    assert_spaced(per_child[0] + per_child[1], rate=10)
    # Interleaved: each process alone would have needed 1.4 s; sharing, each waits for the other.
    assert all(times[-1] - times[0] >= 2.0 for times in per_child)


def unused_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_redis_the_limit_holds_per_process_with_one_warning(caplog):
    sleeps = []
    limiter = SharedRateLimiter(
        f"redis://127.0.0.1:{unused_port()}/0", "vsm:rate:7", rate=10, sleep=sleeps.append
    )

    with caplog.at_level(logging.WARNING, logger="connectors.client"):
        for _ in range(3):
            limiter.acquire()

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "does not answer" in warnings[0].getMessage() and "per process" in warnings[0].getMessage()
    assert sleeps == pytest.approx([0.1, 0.2], abs=0.02)


@pytest.mark.django_db
def test_connector_instance_shares_the_limit_when_redis_is_configured(settings):
    settings.RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:6379/0"
    connection = ToolConnectionFactory(requests_per_second=5, credentials=JIRA_CREDENTIALS)

    installation = connector_instance(connection).installation
    limiter = installation.rate_limiter()

    assert isinstance(limiter, SharedRateLimiter)
    assert installation.rate_limiter_url == "redis://127.0.0.1:6379/0"
    assert installation.rate_limiter_key.startswith("vsm:rate:")
    assert installation.rate_limiter_key.endswith(f":{connection.pk}")


@pytest.mark.django_db
def test_connector_instance_limits_per_process_in_the_embedded_mode(settings):
    settings.RATE_LIMIT_REDIS_URL = ""
    limited = ToolConnectionFactory(requests_per_second=5, credentials=JIRA_CREDENTIALS)
    unlimited = ToolConnectionFactory(requests_per_second=0, credentials=JIRA_CREDENTIALS)

    assert type(connector_instance(limited).installation.rate_limiter()) is RateLimiter
    assert connector_instance(unlimited).installation.rate_limiter() is None
