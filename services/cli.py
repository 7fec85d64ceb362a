"""`sco-recorder`: one command whose subcommands start each service, or all of them."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import secrets
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import redis

from services.kernel.contracts import Status
from services.kernel.settings import CAMERA_ID_PATTERN, Settings, SettingsError, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(command: F) -> F:
    """The flags that mirror SCO_* settings; a flag not given leaves the environment's value."""
    options = [
        click.option("--source", help="Video file, camera index, or RTSP/HTTP URL [SCO_SOURCE]."),
        click.option("--camera-id", help="Camera ID [SCO_CAMERA_ID]."),
        click.option(
            "--output",
            "output_dir",
            type=click.Path(path_type=Path, file_okay=False),
            help="Recordings root [SCO_OUTPUT_DIR].",
        ),
        click.option("--frames", type=int, help="Frames before each event, N [SCO_FRAMES]."),
        click.option("--port", type=int, help="API port [SCO_PORT]."),
        click.option("--host", help="API bind address [SCO_HOST]."),
        click.option("--workers", type=int, help="Worker processes [SCO_WORKERS]."),
        click.option("--redis-url", help="Frame store [SCO_REDIS_URL, REDIS_URL]."),
        click.option("--broker-url", help="Broker and state store [SCO_BROKER_URL]."),
        click.option("--log-level", help="Logging level [SCO_LOG_LEVEL]."),
        click.option(
            "--config",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Store file: cameras, lanes, webhooks, defaults [SCO_CONFIG].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def settings_from(flags: dict[str, Any]) -> Settings:
    """Settings from the environment and flags; an invalid one stops us with its name."""
    try:
        return load_settings(**flags)
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


def needs_redis(settings: Settings) -> Settings:
    """Single services need a Redis to talk to; only `up` starts one of its own."""
    if settings.redis_url is None:
        raise click.UsageError("set SCO_REDIS_URL (or --redis-url), or use `sco-recorder up`")
    return settings


def stack_redis(settings: Settings) -> Settings:
    """A tool's Redis: the one configured, else that of an `up` running on the same root."""
    from services.stack import running_stack_urls  # noqa: PLC0415  # see capture

    if settings.redis_url is None:
        urls = running_stack_urls(settings.output_dir)
        if urls is not None:
            return settings.model_copy(update=urls)
    return needs_redis(settings)


def service(command: Callable[[Settings], None]) -> Callable[..., None]:
    """Wrap a service's main(settings) as a click command body."""

    @functools.wraps(command)
    def run(**flags: Any) -> None:
        command(needs_redis(settings_from(flags)))

    return run


@click.group()
@click.version_option(package_name="sco-recorder")
def cli() -> None:
    """Record the camera frames just before each self-checkout event."""


@cli.command()
@settings_options
def capture(**flags: Any) -> None:
    """Capture one source into its camera's frame stream."""
    from services.capture.main import main  # noqa: PLC0415  # each service loads only its own deps
    from services.capture.spec import SourceError  # noqa: PLC0415

    try:
        service(main)(**flags)
    except SourceError as error:
        raise click.ClickException(str(error)) from None


@cli.command()
@settings_options
def captures(**flags: Any) -> None:
    """A capture per camera of the store file (or the one SCO_SOURCE), each its own process."""
    from services.capture.spec import SourceError  # noqa: PLC0415  # see capture
    from services.kernel.logconfig import configure_logging  # noqa: PLC0415
    from services.runtime.lifecycle import Lifecycle  # noqa: PLC0415
    from services.stack import Captures  # noqa: PLC0415

    settings = needs_redis(settings_from(flags))
    configure_logging(settings.log_level)
    with Lifecycle("captures") as life:
        try:
            code = Captures(settings).run(life.stop)
        except SourceError as error:
            raise click.ClickException(str(error)) from None
    sys.exit(code)


@cli.command()
@settings_options
def api(**flags: Any) -> None:
    """Serve the HTTP API."""
    from services.api.main import main  # noqa: PLC0415  # each service loads only its own deps

    service(main)(**flags)


@cli.command()
@settings_options
def worker(**flags: Any) -> None:
    """Run Celery workers that write recordings."""
    from services.runtime.lifecycle import Lifecycle, shared_metrics  # noqa: PLC0415

    settings = needs_redis(settings_from(flags))
    with Lifecycle("worker", signals=False) as life:  # Celery handles the signals
        if settings.metrics_port:
            # Before prometheus_client is imported: pool processes then share their samples.
            life.enter(shared_metrics("worker"))
        from services.worker.main import main  # noqa: PLC0415  # each service loads only its deps

        main(settings)


@cli.command()
@settings_options
def beat(**flags: Any) -> None:
    """Send the periodic tasks: a prune pass every SCO_PRUNE_INTERVAL, and with webhooks a
    look for due deliveries every SCO_WEBHOOK_INTERVAL. Run exactly one."""
    from services.kernel.logconfig import configure_logging  # noqa: PLC0415  # see capture
    from services.runtime.beat import run_beat  # noqa: PLC0415

    settings = needs_redis(settings_from(flags))
    configure_logging(settings.log_level)
    if not settings.webhooks:
        click.echo("no webhooks configured: beat sends prune passes only", err=True)
    run_beat(settings)


@cli.command()
@settings_options
@click.option("--dry-run", is_flag=True, help="Print what a pass would delete; delete nothing.")
def prune(*, dry_run: bool, **flags: Any) -> None:
    """Run one retention pass now; print each recording it deleted (or would), with sizes."""
    import humanize  # noqa: PLC0415  # see capture

    from services.stores.retention import RetentionStore  # noqa: PLC0415
    from services.stores.storage import Storage  # noqa: PLC0415
    from services.worker.prune import Pruner  # noqa: PLC0415

    settings = stack_redis(settings_from(flags))
    os.nice(settings.worker_nice)  # bulk work, as in a worker: the capture and API go first
    client = redis.Redis.from_url(settings.state_store_url)
    pruner = Pruner(settings, RetentionStore(client), Storage(settings.output_dir.resolve()))
    report = pruner.run(dry_run=dry_run)
    if report.skipped:
        raise click.ClickException(report.skipped)
    verb = "would delete" if dry_run else "deleted"
    for deletion in report.deletions:
        click.echo(
            f"{verb}  {deletion.camera_id}  {deletion.recording_id}  "
            f"{deletion.event_time:%Y-%m-%d %H:%M:%S}  {humanize.naturalsize(deletion.size)}  "
            f"({deletion.rule})"
        )
    click.echo(f"{verb} {len(report.deletions)} recordings, {humanize.naturalsize(report.freed)}")
    if report.disk is not None:
        free = humanize.naturalsize(report.disk.free_bytes)
        click.echo(f"free space{' after' if not dry_run else ''}: {free}")
        if report.disk.full:
            click.echo(f"disk full: {report.disk.reason}", err=True)


@cli.command()
@settings_options
def notifier(**flags: Any) -> None:
    """Deliver the completion webhooks (signed POSTs of final recordings), with retries."""
    from services.webhooks.main import main  # noqa: PLC0415  # each service loads only its deps

    service(main)(**flags)


@cli.group()
def webhooks() -> None:
    """Deliveries that kept failing: list them, send them again."""


@webhooks.command("failed")
@settings_options
def webhooks_failed(**flags: Any) -> None:
    """List the dead letters: deliveries given up on after SCO_WEBHOOK_GIVE_UP_AFTER."""
    from services.stores.webhooks import WebhookStore  # noqa: PLC0415  # see capture

    settings = stack_redis(settings_from(flags))
    letters = WebhookStore(redis.Redis.from_url(settings.state_store_url)).dead_letters()
    for letter in letters:
        click.echo(
            f"{letter.delivery}  {letter.url}  {letter.attempts} tries  "
            f"failed {letter.failed_at:%Y-%m-%d %H:%M:%S}  {letter.last_error}"
        )
    click.echo(f"{len(letters)} failed deliveries", err=True)


@webhooks.command("replay")
@settings_options
@click.argument("deliveries", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Every failed delivery.")
def webhooks_replay(*, deliveries: tuple[str, ...], replay_all: bool, **flags: Any) -> None:
    """Send failed deliveries again (IDs as `webhooks failed` lists them, or --all)."""
    from services.stores.webhooks import WebhookStore  # noqa: PLC0415  # see capture

    if not deliveries and not replay_all:
        raise click.UsageError("name the deliveries to replay, or pass --all")
    settings = stack_redis(settings_from(flags))
    store = WebhookStore(redis.Redis.from_url(settings.state_store_url))
    chosen = (
        [letter.delivery for letter in store.dead_letters()] if replay_all else list(deliveries)
    )
    replayed = store.replay(chosen, int(time.time() * 1000))
    for delivery in replayed:
        click.echo(f"replaying {delivery}")
    unknown = sorted(set(chosen) - set(replayed))
    if unknown:
        raise click.ClickException(f"not in the failed list: {', '.join(unknown)}")
    click.echo(f"{len(replayed)} deliveries due again", err=True)


@cli.command()
@settings_options
@click.option("--mqtt-url", help="MQTT broker, mqtt://host:1883 [SCO_MQTT_URL].")
def mqtt(**flags: Any) -> None:
    """Accept events published over MQTT on <prefix>/<camera_id>/events."""
    from services.mqtt.main import main  # noqa: PLC0415  # each service loads only its own deps

    settings = needs_redis(settings_from(flags))
    if settings.mqtt_url is None:
        raise click.UsageError("set SCO_MQTT_URL (or --mqtt-url), e.g. mqtt://127.0.0.1:1883")
    main(settings)


@cli.command()
@settings_options
@click.option("--mqtt-url", help="Also accept events over MQTT from this broker [SCO_MQTT_URL].")
def up(**flags: Any) -> None:
    """Start capture, API, workers and beat on this machine (embedded Redis if no URL)."""
    from services.capture.spec import SourceError  # noqa: PLC0415  # see capture
    from services.kernel.logconfig import configure_logging  # noqa: PLC0415
    from services.runtime.lifecycle import Lifecycle  # noqa: PLC0415
    from services.runtime.redisserver import RedisServerError  # noqa: PLC0415
    from services.stack import Stack, banner  # noqa: PLC0415

    settings = settings_from(flags)
    configure_logging(settings.log_level)
    for module in ("cv2", "fpng"):
        if importlib.util.find_spec(module) is None:
            raise click.ClickException(f"`up` needs {module}: pip install 'sco-recorder[all]'")
    with Lifecycle("up") as life:
        stack = Stack(settings)
        life.on_close(stack.stop)
        try:
            stack.start()
        except (SourceError, RedisServerError) as error:
            raise click.ClickException(str(error)) from None
        if not stack.wait_ready(life.stop):
            raise click.ClickException(f"{stack.failed() or 'the API'} did not start; see above")
        click.echo(banner(stack.settings, stack.generated_key))
        code = stack.run_until_stopped(life.stop)
    sys.exit(code)


@cli.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="API base URL.")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1), help="Events.")
@click.option("--camera-id", default=None, help="Camera (default: the API's only camera).")
@click.option("--frames-before", type=click.IntRange(1), default=None, help="Frames per event.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for final states.")
@click.option("--api-key", envvar="SCO_API_KEY", default=None, help="Bearer key [SCO_API_KEY].")
def send(
    *,
    url: str,
    count: int,
    camera_id: str | None,
    frames_before: int | None,
    wait: bool,
    api_key: str | None,
) -> None:
    """Post test events (a batch, with a progress bar) and report where they ended."""
    batch = uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url, timeout=10.0, headers=headers) as client:
        ids = []
        with click.progressbar(range(count), label="sending events") as bar:
            for number in bar:
                body: dict[str, Any] = {
                    "transaction_id": f"TEST-{batch}-{number + 1}",
                    "metadata": {"source": "sco-recorder send", "event": number + 1},
                }
                if camera_id:
                    body["camera_id"] = camera_id
                if frames_before:
                    body["frames_before"] = frames_before
                answer = client.post("/v1/events", json=body)
                if answer.status_code != 202:  # noqa: PLR2004
                    raise click.ClickException(f"{answer.status_code}: {answer.text}")
                ids.append(answer.json()["recording_id"])
        if wait:
            report_final(client, ids)


PUBLIC_KEY_FILE = "signing-key.pub"  # `get` leaves the box's key beside what it unpacked


def client_key(url: str, headers: dict[str, str]) -> str:
    """The box's public signing key (PEM), from its API."""
    answer = httpx.get(f"{url.rstrip('/')}/v1/signing-key", headers=headers, timeout=30.0)
    if answer.status_code != 200:  # noqa: PLR2004
        raise click.ClickException(f"signing key: {answer.status_code}: {_detail(answer)}")
    return str(answer.json()["pem"])


@cli.command()
@click.argument("recording_id")
@click.option(
    "--to", "target", default=".", show_default=True,
    type=click.Path(path_type=Path, file_okay=False), help="Unpack into DIR/<recording_id>/.",
)  # fmt: skip
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="API base URL.")
@click.option("--api-key", envvar="SCO_API_KEY", default=None, help="Bearer key [SCO_API_KEY].")
def get(*, recording_id: str, target: Path, url: str, api_key: str | None) -> None:
    """Download a recording (zip, streamed), unpack it and verify every file."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as archive:
        with (
            httpx.Client(base_url=url, timeout=60.0, headers=headers) as client,
            client.stream("GET", f"/v1/recordings/{recording_id}/download") as answer,
        ):
            if answer.status_code != 200:  # noqa: PLR2004
                answer.read()
                raise click.ClickException(f"{answer.status_code}: {_detail(answer)}")
            for chunk in answer.iter_bytes():
                archive.write(chunk)
        archive.seek(0)
        with zipfile.ZipFile(archive) as unpacked:
            for name in unpacked.namelist():
                if not name.startswith(f"{recording_id}/") or ".." in Path(name).parts:
                    raise click.ClickException(f"unexpected file in the archive: {name!r}")
            unpacked.extractall(target)
        key = client_key(url, headers)
    (target / PUBLIC_KEY_FILE).write_text(key)
    folder = target / recording_id
    click.echo(f"saved {folder}, and the box's public key in {target / PUBLIC_KEY_FILE}")
    _report_check(folder, key)


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--key", "key_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The box's public key (GET /v1/signing-key); default: signing-key.pub beside "
    "FOLDER, as `get` leaves it.",
)  # fmt: skip
def verify(folder: Path, key_file: Path | None) -> None:
    """Check a recording folder: metadata.json signed by the box's key and unchanged, every
    frame against its SHA-256 (and SHA256SUMS in a download). Exits 1 on any problem."""
    beside = folder.resolve().parent / PUBLIC_KEY_FILE
    key_file = key_file or (beside if beside.is_file() else None)
    if key_file is None:
        click.echo("no --key given: the signature is checked, not whose it is", err=True)
    _report_check(folder, key_file.read_text() if key_file else None)


def _report_check(folder: Path, key: str | None) -> None:
    from services.kernel.signing import SignatureError, load_public_key  # noqa: PLC0415
    from services.stores.storage import StorageError, check_folder  # noqa: PLC0415  # see capture

    try:
        manifest, problems = check_folder(folder, load_public_key(key) if key else None)
    except (StorageError, SignatureError) as error:
        raise click.ClickException(str(error)) from None
    for problem in problems:
        click.echo(f"MISMATCH {problem}", err=True)
    if problems:
        raise click.ClickException(f"{folder}: {len(problems)} problems; do not rely on it")
    click.echo(
        f"OK {len(manifest.frames)} frames of recording {manifest.recording_id} "
        f"(camera {manifest.camera_id}, {manifest.status.value}) match metadata.json, "
        f"signed by {'the box' if key else 'the key it names'}"
    )


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.text))
    except ValueError:
        return answer.text


def report_final(client: httpx.Client, ids: list[str], timeout: float = 120.0) -> None:
    """Poll each recording until it is final and print one line per recording."""
    deadline = time.monotonic() + timeout
    with click.progressbar(ids, label="waiting for recordings") as bar:
        results = []
        for recording_id in bar:
            while True:
                recording = client.get(f"/v1/recordings/{recording_id}").json()
                if Status(recording["status"]).is_final or time.monotonic() > deadline:
                    results.append(recording)
                    break
                time.sleep(0.2)
    for recording in results:
        saved = f"{recording.get('frames_saved')}/{recording['frames_requested']} frames"
        reason = f" ({recording['reason']})" if recording.get("reason") else ""
        click.echo(f"{recording['recording_id']} {recording['status']} {saved}{reason}")
        if recording.get("path"):
            click.echo(f"  {recording['path']}")


@cli.command()
@click.option(
    "--env-file", type=click.Path(path_type=Path, dir_okay=False), default=".env",
    show_default=True, help="Where compose reads its secrets.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing file (every secret changes).")
@click.option(
    "--lane", "lanes", multiple=True,
    help="A lane whose register publishes over MQTT: it gets a broker password (repeatable).",
)  # fmt: skip
def init(*, env_file: Path, force: bool, lanes: tuple[str, ...]) -> None:
    """Write fresh secrets for `docker compose` into .env: Redis and MQTT passwords, API keys,
    Flower's login. Never copy secrets from a README; run this once per box."""
    if env_file.exists() and not force:
        raise click.ClickException(f"{env_file} exists; --force replaces every secret in it")
    fresh = {
        "FRAMES_REDIS_PASSWORD": secrets.token_hex(24),
        "BROKER_REDIS_PASSWORD": secrets.token_hex(24),
        "SCO_API_KEY": secrets.token_urlsafe(32),
        "SCO_INGEST_KEYS": secrets.token_urlsafe(32),
        "SCO_READ_KEYS": secrets.token_urlsafe(32),
        "FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(16)}",
        "MQTT_INGEST_PASSWORD": secrets.token_hex(24),
    }
    for lane in lanes:
        if not re.match(CAMERA_ID_PATTERN, lane):
            raise click.UsageError(f"--lane {lane!r} must match {CAMERA_ID_PATTERN}")
    if lanes:
        fresh["MQTT_LANE_PASSWORDS"] = ",".join(f"{lane}={secrets.token_hex(16)}" for lane in lanes)
    lines = ["# Written by `sco-recorder init`: this box's secrets; keep the file private.\n"]
    lines += [f"{name}={value}\n" for name, value in fresh.items()]
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.writelines(lines)
    click.echo(f"wrote {len(fresh)} secrets to {env_file} (mode 0600): {', '.join(fresh)}")
    click.echo(
        "the cashier system posts events with SCO_INGEST_KEYS; investigators and the page use "
        "SCO_READ_KEYS. Then: docker compose up -d"
    )


@cli.group()
def config() -> None:
    """The store file: cameras, lanes, webhooks and defaults in one TOML file."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def config_check(file: Path) -> None:
    """Validate a store file; print the configuration it resolves to, secrets masked.

    Variables (SCO_*) still override the file, as they will when the store runs.
    """
    from services.kernel.settings import shown_settings  # noqa: PLC0415

    settings = settings_from({"config": file})
    click.echo(json.dumps(shown_settings(settings), indent=2))
    click.echo(
        f"{file}: OK: {len(settings.camera_ids)} cameras, {len(settings.lanes)} lanes, "
        f"{len(settings.webhooks)} webhooks",
        err=True,
    )


@cli.command()
@click.argument(
    "service_name", type=click.Choice(["api", "capture", "worker", "mqtt", "beat", "notifier"])
)
@settings_options
def check(service_name: str, **flags: Any) -> None:
    """Exit 0 if SERVICE_NAME is healthy (for container healthchecks), else 1 with the reason."""
    from services.runtime.probes import PROBES, Unhealthy  # noqa: PLC0415  # a probe starts fast

    settings = settings_from(flags)
    try:
        click.echo(PROBES[service_name](settings))
    except (Unhealthy, SettingsError, redis.RedisError) as error:
        raise click.ClickException(str(error)) from None


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
