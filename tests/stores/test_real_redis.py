"""The store and Lua tests again, on a real redis-server: keeps fakeredis honest.

Every test of the modules imported below runs here a second time, with `store_redis` on a
database of the session's real server instead of fakeredis.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stores.test_framebuffer import *  # noqa: F403  # the same cases, collected again
from tests.stores.test_recordings import *  # noqa: F403
from tests.stores.test_search import *  # noqa: F403
from tests.support.servers import Servers
from tests.support.storeredis import StoreRedis, real_store_redis
from tests.worker.test_liveness import *  # noqa: F403
from tests.worker.test_prune import *  # noqa: F403


@pytest.fixture
def store_redis(servers: Servers) -> Iterator[StoreRedis]:
    """A database of the session's state server that no worker consumes from."""
    store = real_store_redis(servers.broker.url.rsplit("/", 1)[0] + "/4")
    yield store
    store.client.flushdb()
    store.close()
