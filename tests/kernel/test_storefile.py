"""The store file: one TOML file describes a store; variables and flags still override it;
a mistake is named by file, key and line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.kernel.settings import SettingsError, load_settings, settings_env

STORE = """\
# Lanes 1 and 2 of a store.
[defaults]
frames = 12
retention_days = 14

[cameras.lane-1-top]
source = "rtsp://admin:hunter2@10.0.0.5/stream1"
fps = 15

[cameras.lane-1-bag]
source = "1"
retention_days = 7
retention_max_bytes = 1000000

[cameras.lane-2-top]
source = "2"
frames = 40

[lanes]
lane-1 = ["lane-1-top", "lane-1-bag"]
lane-2 = ["lane-2-top"]

[[webhooks]]
url = "http://lp.example/hooks/a"
secret = "a-secret-of-some-length"

[[webhooks]]
url = "http://lp.example/hooks/b"
secret_file = "SECRET_FILE"
"""


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SCO_FRAMES", "SCO_CAMERAS", "SCO_CONFIG", "SCO_LANES", "SCO_WEBHOOKS"):
        monkeypatch.delenv(name, raising=False)
    secret = tmp_path / "hook-b.secret"
    secret.write_text("another-secret-from-a-file\n")
    path = tmp_path / "store.toml"
    path.write_text(STORE.replace("SECRET_FILE", str(secret)))
    return path


def broken(store: Path, old: str, new: str) -> Path:
    text = store.read_text()
    assert old in text
    store.write_text(text.replace(old, new))
    return store


def test_the_file_describes_cameras_lanes_webhooks_and_defaults(store: Path) -> None:
    settings = load_settings(config=store)
    assert settings.camera_ids == ["lane-1-top", "lane-1-bag", "lane-2-top"]
    assert settings.lanes == {"lane-1": ["lane-1-top", "lane-1-bag"], "lane-2": ["lane-2-top"]}
    assert settings.frames_of("lane-1-top") == 12
    assert settings.frames_of("lane-2-top") == 40
    top = settings.for_camera("lane-1-top")
    assert (top.camera_id, top.source, top.fps) == ("lane-1-top", settings.camera_sources[
        "lane-1-top"].source, 15)  # fmt: skip
    assert settings.retention_days_of("lane-1-top") == 14
    assert settings.retention_days_of("lane-1-bag") == 7
    assert settings.retention_max_bytes_of("lane-1-bag") == 1_000_000
    secrets = [hook.signing_secret() for hook in settings.webhooks]
    assert secrets == [b"a-secret-of-some-length", b"another-secret-from-a-file"]


def test_variables_override_the_file_and_flags_override_variables(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCO_CONFIG", str(store))
    monkeypatch.setenv("SCO_FRAMES", "20")
    assert load_settings().frames == 20
    assert load_settings(frames=25).frames == 25
    monkeypatch.setenv("SCO_RETENTION_DAYS", "3")
    assert load_settings().retention_days_of("lane-1-top") == 3


def test_children_get_the_same_store_through_their_environment(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up` hands its resolved settings to each process as SCO_* variables."""
    settings = load_settings(config=store)
    env = settings_env(settings)
    monkeypatch.delenv("SCO_CONFIG", raising=False)
    for name, value in env.items():
        if name != "SCO_CONFIG":
            monkeypatch.setenv(name, value)
    child = load_settings()
    assert child.lanes == settings.lanes
    assert child.camera_sources == settings.camera_sources
    assert [hook.signing_secret() for hook in child.webhooks] == [
        hook.signing_secret() for hook in settings.webhooks
    ]


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("frames = 40", 'frames = "many"', ":17: cameras.lane-2-top.frames: Input should be"),
        ("frames = 12", "framez = 12", ":3: defaults.framez: no such setting"),
        ('lane-2 = ["lane-2-top"]', 'lane-2 = ["lane-3-top"]', ":21: lanes.lane-2: no [cameras"),
        ('source = "2"', 'sauce = "2"', ":15: cameras.lane-2-top: Field required"),
        ('secret = "a-secret-of-some-length"', 'secret = "short"', ":23: webhooks[0]: the secret"),
        ('url = "http://lp.example/hooks/b"', 'url = "ftp://x"', ":28: webhooks[1].url: String"),
        ("fps = 15", "fps = ", ": not valid TOML: Invalid value (at line 8"),
        ("[lanes]", "[lanez]", ":19: lanez: unknown table"),
    ],
)
def test_a_mistake_is_named_by_file_key_and_line(
    store: Path, old: str, new: str, named: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(config=broken(store, old, new))
    assert str(raised.value).startswith(f"{store}{named}"), raised.value


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such store file"):
        load_settings(config=tmp_path / "nowhere.toml")


def test_config_check_prints_the_store_with_secrets_masked_and_names_a_bad_line(
    store: Path,
) -> None:
    """The real command, as an installer runs it before starting a store."""
    check = [sys.executable, "-m", "services.cli", "config", "check"]
    good = subprocess.run([*check, str(store)], capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    assert "OK: 3 cameras, 2 lanes, 2 webhooks" in good.stderr
    shown = json.loads(good.stdout)
    assert shown["camera_sources"]["lane-1-top"]["source"] == "rtsp://admin:***@10.0.0.5/stream1"
    assert "hunter2" not in good.stdout
    assert "a-secret-of-some-length" not in good.stdout
    assert "another-secret" not in good.stdout
    bad = subprocess.run(
        [*check, str(broken(store, "frames = 40", "frames = -1"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert f"{store}:17: cameras.lane-2-top.frames: Input should be greater" in bad.stderr


def test_the_example_store_is_the_one_in_the_readme_and_it_checks(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent.parent
    example = (root / "store.example.toml").read_text()
    assert example in (root / "README.md").read_text()
    secret = tmp_path / "webhook-lp"
    secret.write_text("a-webhook-secret-of-some-length\n")
    store = tmp_path / "store.toml"
    store.write_text(example.replace("/run/secrets/webhook-lp", str(secret)))
    settings = load_settings(config=store)
    assert list(settings.lanes) == ["lane-1", "lane-2"]
    assert settings.frames_of("lane-2-bag") == 45
