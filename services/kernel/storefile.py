"""The store file: a whole store's cameras, lanes and webhooks in one TOML file.

pydantic-settings reads the TOML; this module only reshapes its tables into settings
(`[defaults]` keys are settings by name, `[cameras.<id>]` become `cameras`, `camera_sources`
and `camera_retention`, `[lanes]` and `[[webhooks]]` their own settings) and, when a value is
wrong, says on which line of the file it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, TomlConfigSettingsSource

TABLES = ("defaults", "cameras", "lanes", "webhooks")
# Keys of a [cameras.<id>] table that are not the camera's own settings but its retention.
RETENTION_KEYS = {"retention_days": "days", "retention_max_bytes": "max_bytes"}
# Settings a store file describes in its own tables, never under [defaults].
DESCRIBED = frozenset({"cameras", "camera_sources", "camera_retention", "lanes", "webhooks"})


class StoreFileError(ValueError):
    """The store file cannot be read or does not describe a store; says where."""


@dataclass(frozen=True)
class Place:
    """Where a value sits in the file: its table (`cameras.lane-1`, `webhooks[0]`) and key."""

    table: str
    key: str | None = None


@dataclass
class StoreFile:
    """A store file's values as settings, and where each came from."""

    path: Path
    values: dict[str, Any]
    places: dict[tuple[str | int, ...], Place] = field(default_factory=dict)
    _lines: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path, settings_cls: type[BaseSettings]) -> StoreFile:
        """Read and reshape the file; raise StoreFileError naming the file, key and line."""
        if not path.is_file():
            raise StoreFileError(f"{path}: no such store file")
        try:
            data = TomlConfigSettingsSource(settings_cls, toml_file=path).toml_data
        except ValueError as error:  # tomllib's (tomli's before 3.11) TOMLDecodeError
            raise StoreFileError(f"{path}: not valid TOML: {error}") from None
        store = cls(path, {}, _lines=path.read_text().splitlines())
        store._reshape(data, set(settings_cls.model_fields))
        return store

    def where(self, loc: tuple[str | int, ...]) -> str | None:
        """`file:line` (and the key) of the value a settings error's location points at."""
        for length in range(len(loc), 0, -1):
            place = self.places.get(loc[:length])
            if place is not None:
                return self._describe(place)
        return None

    def _describe(self, place: Place) -> str:
        line = self._line_of(place)
        key = f"{place.table}.{place.key}" if place.key else place.table
        return f"{self.path}:{line}: {key}" if line else f"{self.path}: {key}"

    def fail(self, place: Place, message: str) -> StoreFileError:
        """An error naming the file, line and key of `place`."""
        return StoreFileError(f"{self._describe(place)}: {message}")

    def _reshape(self, data: dict[str, Any], known: set[str]) -> None:
        for table in data:
            if table not in TABLES:
                raise self.fail(
                    Place(table), f"unknown table; a store file has {', '.join(TABLES)}"
                )
        self._defaults(_table(self, data, "defaults", dict), known)
        self._cameras(_table(self, data, "cameras", dict))
        self._lanes(_table(self, data, "lanes", dict))
        hooks = _table(self, data, "webhooks", list)
        if hooks:
            self.values["webhooks"] = hooks
            for index, hook in enumerate(hooks):
                self.places[("webhooks", index)] = Place(f"webhooks[{index}]")
                if isinstance(hook, dict):
                    for key in hook:
                        self.places[("webhooks", index, key)] = Place(f"webhooks[{index}]", key)

    def _defaults(self, defaults: dict[str, Any], known: set[str]) -> None:
        for key, value in defaults.items():
            place = Place("defaults", key)
            if key in DESCRIBED:
                raise self.fail(place, "describe cameras, lanes and webhooks in their tables")
            if key not in known or key == "config":
                raise self.fail(place, "no such setting")
            self.values[key] = value
            self.places[(key,)] = place

    def _cameras(self, cameras: dict[str, Any]) -> None:
        sources: dict[str, dict[str, Any]] = {}
        retention: dict[str, dict[str, Any]] = {}
        for camera, table in cameras.items():
            name = f"cameras.{camera}"
            if not isinstance(table, dict):
                raise self.fail(Place(name), "must be a table, [cameras.<camera id>]")
            own = {key: value for key, value in table.items() if key not in RETENTION_KEYS}
            kept = {RETENTION_KEYS[key]: value for key, value in table.items()
                    if key in RETENTION_KEYS}  # fmt: skip
            sources[camera] = own
            self.places[("cameras",)] = Place("cameras")
            self.places[("camera_sources", camera)] = Place(name)
            for key in own:
                self.places[("camera_sources", camera, key)] = Place(name, key)
            if kept:
                retention[camera] = kept
                self.places[("camera_retention", camera)] = Place(name)
                for key, short in RETENTION_KEYS.items():
                    self.places[("camera_retention", camera, short)] = Place(name, key)
        if cameras:
            self.values.update(cameras=list(cameras), camera_sources=sources)
        if retention:
            self.values["camera_retention"] = retention

    def _lanes(self, lanes: dict[str, Any]) -> None:
        cameras = self.values.get("cameras")
        for lane, members in lanes.items():
            place = Place("lanes", lane)
            self.places[("lanes", lane)] = place
            if not isinstance(members, list) or not members:
                raise self.fail(place, 'must list the lane\'s cameras, e.g. ["lane-1-top"]')
            unknown = [camera for camera in members if cameras is None or camera not in cameras]
            if unknown:
                missing = unknown[0]
                raise self.fail(place, f"no [cameras.{missing}] table for camera {missing!r}")
        if lanes:
            self.values["lanes"] = lanes

    def _line_of(self, place: Place) -> int | None:
        """The 1-based line of a table's header, or of a key within it."""
        header, nth = _header_pattern(place.table)
        seen, header_line = -1, None
        for number, line in enumerate(self._lines, 1):
            text = line.split("#", 1)[0].strip()
            if text.startswith("["):
                if header_line is not None:
                    break
                if header.fullmatch(text):
                    seen += 1
                    if seen == nth:
                        header_line = number
                        if place.key is None:
                            return number
            elif header_line is not None and place.key is not None and _assigns(text, place.key):
                return number
        return header_line


def _table(store: StoreFile, data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name, kind())
    if not isinstance(value, kind):
        shape = f"[{name}]" if kind is dict else f"[[{name}]]"
        raise store.fail(Place(name), f"must be a table, {shape}")
    return value


def _header_pattern(table: str) -> tuple[re.Pattern[str], int]:
    """A table's header line (`[cameras.lane-1]`, `[cameras."lane-1"]`), and which of the
    headers that match it is meant: the n-th `[[webhooks]]` for `webhooks[n]`."""
    indexed = re.fullmatch(r"(\w+)\[(\d+)\]", table)
    if indexed:
        return re.compile(rf"\[\[\s*{re.escape(indexed.group(1))}\s*\]\]"), int(indexed.group(2))
    parts = [rf"\s*\"?{re.escape(part)}\"?\s*" for part in table.split(".", 1)]
    return re.compile(r"\[" + r"\.".join(parts) + r"\]"), 0


def _assigns(line: str, key: str) -> bool:
    return bool(re.match(rf"\"?{re.escape(key)}\"?\s*=", line))
