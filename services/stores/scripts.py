"""Lua scripts kept as `.lua` files beside the stores, called with named arguments.

Each script names its KEYS and ARGV once, here, in the order the `.lua` file reads them; a
store calls `SCRIPT.bind(name=value, ...)` and gets the two lists Redis wants, so no caller
counts positions. Every script starts with the set of final statuses, built from `Status`,
so Lua and Python cannot disagree on which statuses are final.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from services.kernel.contracts import FINAL_STATUSES

ScriptArg = bytes | str | int | float

_FINAL = ", ".join(f"{status.value}=true" for status in sorted(FINAL_STATUSES))
PREAMBLE = f"local FINAL = {{{_FINAL}}}\n"


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

        An argument named `*name` is a list that fills the rest of ARGV.
        """
        names = [name.lstrip("*") for name in self.keys + self.args]
        missing, unknown = set(names) - set(values), set(values) - set(names)
        if missing or unknown:
            raise TypeError(
                f"{self.name}.lua: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        argv: list[ScriptArg] = []
        for name in self.args:
            if name.startswith("*"):
                argv.extend(values[name[1:]])
            else:
                argv.append(values[name])
        return [str(values[name]) for name in self.keys], argv


PIN = LuaScript.load(
    "pin",
    keys=("index", "pins"),
    args=("moment_us", "frames_before", "recording_id", "frames_after", "lifetime_ms", "now_us"),
)
TRIM = LuaScript.load(
    "trim",
    keys=("stream", "index", "pins"),
    args=("keep", "cap", "now_ms", "budget", "max_pins"),
)
CREATE = LuaScript.load(
    "create",
    keys=("idempotency", "recording", "all", "of_camera", "queue", "open"),
    args=("claim", "recording_id", "ttl", "score", "max_queued", "job_message", "deadline_ms",
          "*fields"),
)  # fmt: skip
UPDATE = LuaScript.load(
    "update", keys=("recording", "open"), args=("recording_id", "final", "*fields")
)
START = LuaScript.load(
    "start",
    keys=("recording", "open"),
    args=("recording_id", "max_deliveries", "retries", "deadline_ms", "deadline_iso", "now_iso",
          "failed_reason"),
)  # fmt: skip
REQUEUED = LuaScript.load(
    "requeued",
    keys=("recording", "open"),
    args=("recording_id", "reason", "deadline_ms", "deadline_iso", "now_iso"),
)
SETTLE = LuaScript.load(
    "settle",
    keys=("recording", "open"),
    args=("recording_id", "now_ms", "now_iso", "running_reason", "queued_reason"),
)
