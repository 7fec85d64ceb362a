"""Schemathesis against the API's own OpenAPI schema, over real HTTP: no 5xx, ever.

Cases come from schemathesis' Hypothesis strategies, valid ones and deliberately invalid
ones, and are sent to the live API served in a thread.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis
import schemathesis
from schemathesis import Case, GenerationMode

from services.kernel import keys
from tests.support.processes import ApiServer
from tests.support.servers import Servers, base_settings

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

EXAMPLES = 250  # per operation and mode; many operations have few distinct inputs
MIN_CASES = 1000


# Thousands of requests, not a hang: 117 s alone on a slow day here, against the suite's
# 120 s per test, and a timeout inside a Hypothesis example reads as a flaky failure.
@pytest.mark.timeout(600)
def test_fuzzed_requests_never_get_a_server_error_and_rejections_write_nothing(
    servers: Servers, tmp_path: Path
) -> None:
    """Over 1,000 generated requests: no 5xx, and only events answered 202 left a recording."""
    # A broker database no worker reads: the fuzzer's accepted jobs only need to be counted.
    idle_broker = servers.broker.url.rsplit("/", 1)[0] + "/3"
    settings = base_settings(servers, tmp_path, broker_url=idle_broker)
    server = ApiServer(settings).start()
    counts: Counter[str] = Counter()
    accepted: set[str] = set()
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]  # our own schema is valid
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @hypothesis.given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
                @hypothesis.settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    suppress_health_check=list(hypothesis.HealthCheck),
                    database=None,
                )
                def send(case: Case[Any]) -> None:
                    response = case.call(base_url=server.url, timeout=10)
                    counts["total"] += 1
                    counts[f"{case.method} {response.status_code}"] += 1
                    if case.method == "POST" and response.status_code == 202:
                        accepted.add(response.json()["recording_id"])
                    # No capture runs here, so /readyz is rightly "not ready"; nothing else
                    # may answer 5xx while the stores are up.
                    not_ready = case.path == "/readyz" and response.status_code == 503
                    assert response.status_code < 500 or not_ready, (case.path, case.body)

                try:
                    send()
                except hypothesis.errors.Unsatisfiable:
                    # An operation without parameters has no invalid form to generate.
                    assert mode is GenerationMode.NEGATIVE
    finally:
        server.stop()
    assert counts["total"] >= MIN_CASES, counts
    state = redis.Redis.from_url(str(settings.broker_url))
    # Repeats of one transaction ID or Idempotency-Key are answered 202 with the same recording.
    assert state.zcard(keys.recordings_of(settings.camera_id)) == len(accepted), counts
    print(f"\nfuzzing: {dict(counts)}")
