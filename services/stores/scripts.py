"""Lua scripts kept as `.lua` files beside the stores, called with named arguments.

Each script names its KEYS and ARGV once, here, in the order the `.lua` file reads them; a
store calls `SCRIPT.bind(name=value, ...)` and gets the two lists Redis wants, so no caller
counts positions. Every script starts with the set of final statuses, built from `Status`,
so Lua and Python cannot disagree on which statuses are final, and with `on_final`, the one
bookkeeping every way to a final status shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from services.kernel.contracts import FINAL_STATUSES

ScriptArg = bytes | str | int | float

OUTBOX_CAP = 100_000  # final recordings waiting to be told to the webhooks, at most
_FINAL = ", ".join(f"{status.value}=true" for status in sorted(FINAL_STATUSES))
# What every script that makes a recording final does next: its bytes count towards its
# camera's usage; its job message is no longer kept for the lost-job check; unless it is on
# hold, the retention rules may now consider it; and the webhooks' outbox gets it (capped:
# with no webhook configured, nothing drains it). Its keys, FINAL_KEYS, sit in KEYS from
# `first` on.
_ON_FINAL = f"""
local function on_final(recording_key, recording_id, camera_id, first)
  local retention_key, camera_retention_key = KEYS[first], KEYS[first + 1]
  local usage_key, outbox_key, jobs_key = KEYS[first + 2], KEYS[first + 3], KEYS[first + 4]
  local bytes = tonumber(redis.call('HGET', recording_key, 'bytes') or '0')
  redis.call('HINCRBY', usage_key, camera_id, bytes)
  redis.call('HDEL', jobs_key, recording_id)
  redis.call('RPUSH', outbox_key, recording_id)
  redis.call('LTRIM', outbox_key, -{OUTBOX_CAP}, -1)
  if redis.call('HEXISTS', recording_key, 'hold') == 1 then return end
  local score = redis.call('HGET', recording_key, 'received_ms') or '0'
  redis.call('ZADD', retention_key, score, recording_id)
  redis.call('ZADD', camera_retention_key, score, recording_id)
end
"""
PREAMBLE = f"local FINAL = {{{_FINAL}}}\n{_ON_FINAL}"


@dataclass(frozen=True)
class LuaScript:
    """One script: its source and the names of its keys and arguments, in order."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    source: str

    @classmethod
    def load(cls, name: str, *, keys: tuple[str, ...], args: tuple[str, ...]) -> LuaScript:
        """`stores/lua/<name>.lua`, with the final statuses defined before it."""
        text = (
            resources.files("services.stores").joinpath("lua").joinpath(f"{name}.lua").read_text()
        )
        return cls(name, keys, args, PREAMBLE + text)

    def bind(self, **values: Any) -> tuple[list[str], list[ScriptArg]]:
        """KEYS and ARGV from named values; every name must be given, and no other.

        A key or argument named `*name` is a list that fills the rest of KEYS or ARGV.
        """
        names = [name.lstrip("*") for name in self.keys + self.args]
        missing, unknown = set(names) - set(values), set(values) - set(names)
        if missing or unknown:
            raise TypeError(
                f"{self.name}.lua: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )

        def filled(names: tuple[str, ...]) -> list[Any]:
            out: list[Any] = []
            for name in names:
                if name.startswith("*"):
                    out.extend(values[name[1:]])
                else:
                    out.append(values[name])
            return out

        return [str(key) for key in filled(self.keys)], filled(self.args)


PIN = LuaScript.load(
    "pin",
    keys=("*buffers",),  # each camera's index, then its pins
    args=("moment_us", "lifetime_ms", "now_us", "*windows"),  # each: N, recording, after
)
TRIM = LuaScript.load(
    "trim",
    keys=("stream", "index", "pins"),
    args=("keep", "cap", "now_ms", "budget", "max_pins"),
)
ADVANCE = LuaScript.load("advance", keys=("pins", "owner"), args=("member", "token", "first_us"))
CREATE = LuaScript.load(
    "create",
    keys=("idempotency", "recording", "all", "of_camera", "queue", "open", "held", "transaction",
          "jobs"),
    args=("claim", "recording_id", "ttl", "score", "max_queued", "job_message", "deadline_ms",
          "on_hold", "*fields"),
)  # fmt: skip
CREATE_EVENT = LuaScript.load(
    "create_event",
    keys=("idempotency", "event", "queue", "open", "all", "jobs", "*per_recording"),
    args=("claim", "event_id", "ttl", "score", "max_queued", "deadline_ms", "on_hold", "count",
          "event_field_count", "*event_fields_then_recordings"),
)  # fmt: skip
# The keys `on_final` writes, after those a finalising script names itself.
FINAL_KEYS = ("retention", "camera_retention", "usage", "outbox", "jobs")
UPDATE = LuaScript.load(
    "update",
    keys=("recording", "open", *FINAL_KEYS),
    args=("recording_id", "final", "camera_id", "*fields"),
)
START = LuaScript.load(
    "start",
    keys=("recording", "open", *FINAL_KEYS),
    args=("recording_id", "max_deliveries", "retries", "deadline_ms", "deadline_iso", "now_iso",
          "failed_reason", "camera_id"),
)  # fmt: skip
REQUEUED = LuaScript.load(
    "requeued",
    keys=("recording", "open"),
    args=("recording_id", "reason", "deadline_ms", "deadline_iso", "now_iso"),
)
SETTLE = LuaScript.load(
    "settle",
    keys=("recording", "open", *FINAL_KEYS),
    args=("recording_id", "now_ms", "now_iso", "running_reason", "queued_reason", "camera_id"),
)
LOST = LuaScript.load(
    "lost", keys=("queue", "unacked", "jobs"), args=("recording_prefix", "*restore")
)  # restore: recording ID, message, ...
RETIRE = LuaScript.load(
    "retire",
    keys=("recording", "gone", "all", "of_camera", "retention", "camera_retention",
          "usage", "deletions", "open", "transaction"),
    args=("recording_id", "camera_id", "rule", "reason", "now_iso", "tombstone_ttl",
          "event_prefix"),
)  # fmt: skip
HOLD = LuaScript.load(
    "hold",
    keys=("recording", "gone", "held", "retention", "camera_retention"),
    args=("recording_id", "camera_id", "hold", "released"),
)
WEBHOOK_EXPAND = LuaScript.load(
    "webhook_expand", keys=("outbox", "due"), args=("now_ms", "batch", "*hook_ids")
)
WEBHOOK_CLAIM = LuaScript.load(
    "webhook_claim", keys=("due",), args=("now_ms", "lease_until_ms", "limit")
)
