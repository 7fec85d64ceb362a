"""Settings: SCO_* variables, REDIS_URL, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.kernel.settings import SettingsError, load_settings


def test_environment_variables_configure_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """SCO_* variables and the plain REDIS_URL are read; the broker defaults to the frame store."""
    monkeypatch.setenv("REDIS_URL", "redis://frames:6380/0")
    monkeypatch.setenv("SCO_FRAMES", "45")
    monkeypatch.setenv("SCO_CAMERAS", "lane-1, lane-2")
    settings = load_settings()
    assert settings.frames == 45
    assert settings.camera_ids == ["lane-1", "lane-2"]
    assert settings.frame_store_url == settings.state_store_url == "redis://frames:6380/0"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit value wins over SCO_*; a flag not given (None) does not."""
    monkeypatch.setenv("SCO_FRAMES", "45")
    monkeypatch.setenv("SCO_CAMERA_ID", "lane-7")
    settings = load_settings(frames=12, camera_id=None)
    assert (settings.frames, settings.camera_id) == (12, "lane-7")


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SCO_FRAMES", "0", "SCO_FRAMES"),
        ("SCO_FRAMES", "many", "SCO_FRAMES"),
        ("SCO_CAMERA_ID", "../lane", "SCO_CAMERA_ID"),
        ("SCO_PNG_ENCODER", "gif", "SCO_PNG_ENCODER"),
        ("SCO_LOG_LEVEL", "loud", "SCO_LOG_LEVEL"),
    ],
)
def test_an_invalid_setting_fails_with_its_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    """The error message names the variable to fix."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_an_empty_secret_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """SCO_API_KEY="" (as compose passes an unset variable) turns the key off, not to ""."""
    monkeypatch.setenv("SCO_API_KEY", "")
    assert load_settings().api_key is None


def test_a_pin_shorter_than_a_late_job_plus_a_takeover_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SCO_PIN_SECONDS under max_delay + time limit + takeover names every setting involved."""
    monkeypatch.setenv("SCO_PIN_SECONDS", "60")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    for named in ("SCO_PIN_SECONDS", "SCO_MAX_DELAY", "SCO_TASK_TIME_LIMIT",
                  "SCO_WORKER_LOST_AFTER"):  # fmt: skip
        assert named in str(refused.value)


def test_the_default_pin_outlives_a_late_start_a_full_run_and_a_takeover() -> None:
    """By default a pin lasts max_delay + time limit + the time to notice a dead worker."""
    settings = load_settings(max_delay=30, task_time_limit=300, worker_lost_after=5)
    assert settings.pin_ttl == 30 + 300 + 5 + settings.worker_heartbeat
    assert load_settings(pin_seconds=900).pin_ttl == 900


def test_a_worker_presumed_dead_before_it_could_beat_is_refused() -> None:
    """SCO_WORKER_LOST_AFTER under three heartbeats would take jobs from live workers."""
    with pytest.raises(SettingsError, match=r"SCO_WORKER_LOST_AFTER.*SCO_WORKER_HEARTBEAT"):
        load_settings(worker_heartbeat=2, worker_lost_after=5)


def test_secrets_may_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SCO_<SECRET>_FILE (Docker secrets): read and stripped; keys one per line; the
    variable itself wins; an unreadable file is named."""
    (tmp_path / "api").write_text("from-a-file\n")
    (tmp_path / "read").write_text("first\nsecond\n")
    monkeypatch.setenv("SCO_API_KEY_FILE", str(tmp_path / "api"))
    monkeypatch.setenv("SCO_READ_KEYS_FILE", str(tmp_path / "read"))
    settings = load_settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "from-a-file"
    assert [key.get_secret_value() for key in settings.read_keys] == ["first", "second"]
    monkeypatch.setenv("SCO_API_KEY", "from-the-variable")
    assert load_settings().api_key.get_secret_value() == "from-the-variable"  # type: ignore[union-attr]
    monkeypatch.setenv("SCO_MQTT_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="SCO_MQTT_PASSWORD_FILE"):
        load_settings()
