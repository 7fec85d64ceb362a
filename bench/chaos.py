"""`make chaos`: events at a steady rate while processes are killed and restarted at random.

The stack runs as in production, each service its own process: two Redis servers (frames,
and the broker with AOF), the capture on an indexed video, the API, two workers and, with
--mqtt, mosquitto and the MQTT ingest. Events go in at --rate per second (over HTTP, and
every other one over MQTT with --mqtt) while one process at a time is SIGKILLed (a worker
with its whole process group) and started again a few seconds later. Then every accepted
event must end final; every complete recording must hold exactly the right frames (checked
against every frame the capture wrote, read back by index); every recording whose window no
capture or frame-store fault touched must be complete; and no stray file may be left.

    python -m bench.chaos [--duration 300] [--rate 2] [--seed 1] [--mqtt] [--keep DIR]

Prints a report (markdown) and exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import httpx
import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from services.kernel import keys
from services.kernel.contracts import Manifest, Recording
from services.kernel.settings import Settings
from services.runtime.launcher import ServiceProcess
from services.runtime.redisserver import RedisServer, free_port
from services.stores.recordings import RecordingStore
from tests.support.videos import read_index, write_video

FPS = 25.0
N = 30
WIDTH, HEIGHT = 1280, 720
KINDS = ("worker", "api", "capture", "frames-redis", "broker-redis", "mqtt")
# A fault of the capture or the frame store may cost the frames of events this close to it.
FAULT_MARGIN = 2.0


@dataclass
class Fault:
    """One kill and restart."""

    kind: str
    killed: float
    restarted: float = 0.0


@dataclass
class Sent:
    """One event sent, and what became of it."""

    transaction_id: str
    via: str
    sent_at: float
    code: str = ""
    recording_id: str | None = None


class Mosquitto:
    """Debian's mosquitto on a free port, with persistence, restartable."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # run as root, mosquitto drops to its own user to write here
        (directory / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {directory}/\nlog_dest file {directory}/mosquitto.log\n"
        )

    def start(self) -> None:
        """Start and wait for its port."""
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        if binary is None:
            raise SystemExit("--mqtt needs mosquitto: apt-get install mosquitto")
        self.process = subprocess.Popen([binary, "-c", str(self.directory / "mosquitto.conf")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        """Stop it."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Observer:
    """Ground truth: every frame the capture indexed (stream ID and capture time), read from
    the small index beside the stream, never the frames themselves."""

    def __init__(self, url: str, camera_id: str) -> None:
        self.url, self.index = url, keys.frame_index(camera_id)
        self.frames: dict[str, int] = {}
        self.order: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        last = "-inf"
        while not self.stop.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=2)
                while not self.stop.wait(0.1):
                    new = client.zrangebyscore(self.index, last, "+inf", withscores=True)
                    for raw, score in cast("list[tuple[bytes, float]]", new):
                        stream_id = raw.decode()
                        if stream_id not in self.frames:
                            self.frames[stream_id] = int(score)
                            self.order.append(stream_id)
                            last = f"({int(score)}"
            except redis.RedisError:
                self.stop.wait(0.2)  # the frame store is down: nothing is captured meanwhile


class Chaos:
    """The stack, the traffic, the faults, and the verdict."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work, self.args = work, args
        self.random = random.Random(args.seed)  # noqa: S311  # picks faults, not secrets
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        self.frames = RedisServer(work / "frames", name="frames")
        self.broker = RedisServer(work / "broker", persistent=True, name="broker")
        self.mosquitto = Mosquitto(work / "mosquitto") if args.mqtt else None
        self.sent: list[Sent] = []
        self.faults: list[Fault] = []
        self.stopping = threading.Event()
        self.started = time.time()
        self.settings: Settings
        self.services: dict[str, ServiceProcess] = {}

    def start(self) -> None:
        """Redis, (mosquitto,) capture, API, two workers (, MQTT ingest)."""
        self.frames.start()
        self.broker.start()
        video = write_video(self.work / "lane.avi", 750, WIDTH, HEIGHT, FPS)
        values: dict[str, Any] = {
            "source": str(video), "camera_id": "chaos", "frames": N,
            "redis_url": self.frames.url, "broker_url": self.broker.url,
            "output_dir": self.work / "recordings", "port": free_port(), "workers": 1,
            "log_level": "INFO", "settle_timeout": 1.0,
        }  # fmt: skip
        if self.mosquitto is not None:
            self.mosquitto.start()
            values["mqtt_url"] = f"mqtt://127.0.0.1:{self.mosquitto.port}"
        self.settings = Settings.model_validate(values)
        names = {"capture": "capture", "api": "api", "worker-a": "worker", "worker-b": "worker"}
        if self.mosquitto is not None:
            names["mqtt"] = "mqtt"
        for name, command in names.items():
            log = self.logs / f"{name}.log"
            self.services[name] = ServiceProcess(command, self.settings, log=log, own_group=True)
            self.services[name].start()
        self.observer = Observer(self.frames.url, "chaos")
        self.observer.thread.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the API is ready and the stream holds a full window (N frames)."""
        frames = redis.Redis.from_url(self.frames.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
                if ready and frames.zcard(keys.frame_index("chaos")) >= N:
                    frames.close()
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("the stack did not become ready")

    @property
    def url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.settings.port}"

    def stop(self) -> None:
        """Everything down, Redis last."""
        self.observer.stop.set()
        for service in self.services.values():
            service.stop()
        if self.mosquitto is not None:
            self.mosquitto.stop()
        self.frames.stop()
        self.broker.stop()

    # Traffic.

    def send_events(self) -> None:
        """Events at a steady rate until stopped; a client retries an unanswered one (same
        transaction ID, so never twice) for up to 3 s, as a cashier system would."""
        publisher = self._publisher()
        started = time.monotonic()
        self.started = time.time()
        posting: list[threading.Thread] = []
        with httpx.Client(base_url=self.url, timeout=3.0) as client:
            for number in range(10**9):
                due = started + number / self.args.rate
                if self.stopping.wait(max(0.0, due - time.monotonic())):
                    break
                via = "mqtt" if publisher is not None and number % 2 else "http"
                sent = Sent(f"C-{number:06d}", via, time.time())
                self.sent.append(sent)
                if publisher is not None and via == "mqtt":
                    body = json.dumps({"transaction_id": sent.transaction_id})
                    info = publisher.publish("sco/chaos/events", body, qos=1)
                    sent.code = "published"
                    threading.Thread(target=info.wait_for_publish, args=(30,), daemon=True).start()
                else:
                    posting.append(threading.Thread(target=self._post, args=(client, sent)))
                    posting[-1].start()
            for thread in posting:
                thread.join()
        if publisher is not None:
            publisher.loop_stop()
            publisher.disconnect()

    def _publisher(self) -> mqtt.Client | None:
        if self.mosquitto is None:
            return None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-cashier")
        client.reconnect_delay_set(1, 2)
        client.connect("127.0.0.1", self.mosquitto.port)
        client.loop_start()
        return client

    def _post(self, client: httpx.Client, sent: Sent) -> None:
        body = {"transaction_id": sent.transaction_id}
        deadline = time.monotonic() + 3.0
        while True:
            try:
                answer = client.post("/v1/events", json=body)
            except httpx.TransportError:
                sent.code = "no answer"
            else:
                sent.code = str(answer.status_code)
                if answer.status_code == 202:
                    sent.recording_id = answer.json()["recording_id"]
                    return
            if time.monotonic() > deadline:
                return
            time.sleep(0.5)

    # Faults.

    def inject_faults(self) -> None:
        """One fault at a time, every 8-16 s, until stopped."""
        kinds = [kind for kind in self.args.kinds.split(",") if kind != "mqtt" or self.mosquitto]
        while not self.stopping.wait(self.random.uniform(8, 16)):
            kind = self.random.choice(kinds)
            fault = Fault(kind, time.time())
            self.faults.append(fault)
            kill, restart = self._fault(kind)
            kill()
            self.stopping.wait(self.random.uniform(1, 4))
            restart()
            fault.restarted = time.time()

    def _fault(self, kind: str) -> tuple[Callable[[], object], Callable[[], object]]:
        if kind in {"worker", "api", "capture", "mqtt"}:
            name = self.random.choice(["worker-a", "worker-b"]) if kind == "worker" else kind
            return self.services[name].kill_group, self.services[name].start
        server = self.frames if kind == "frames-redis" else self.broker
        return server.kill, lambda: server.start(port=server.port)

    # The verdict.

    def settle(self, timeout: float) -> dict[str, Recording]:
        """Wait until every recording in the state store is final; return them all."""
        store = RecordingStore(redis.Redis.from_url(self.broker.url))
        deadline = time.monotonic() + timeout
        while True:
            recordings = {r.recording_id: r for r in store.newest(None, 10**6)}
            open_ = [r for r in recordings.values() if not r.status.is_final]
            if not open_ or time.monotonic() > deadline:
                return recordings
            time.sleep(1)

    def disturbed(self, recording: Recording) -> bool:
        """Whether a capture or frame-store fault came near the recording's window."""
        start = recording.received_at.timestamp() - N / FPS - FAULT_MARGIN
        end = recording.received_at.timestamp() + FAULT_MARGIN
        return any(
            fault.kind in {"capture", "frames-redis"}
            and fault.killed <= end
            and (fault.restarted or time.time()) + FAULT_MARGIN >= start
            for fault in self.faults
        )

    def exact(self, recording: Recording) -> str | None:
        """None if the recording holds exactly the right frames, else what is wrong."""
        path = Path(str(recording.path))
        try:
            manifest = Manifest.model_validate_json((path / "metadata.json").read_bytes())
        except (OSError, ValueError) as error:
            return f"no readable metadata.json: {error}"
        return self._wrong_window(manifest) or self._wrong_pixels(manifest, path)

    def _wrong_window(self, manifest: Manifest) -> str | None:
        """The frames must be the N consecutive ones up to the moment, as the capture wrote."""
        ids = [frame.stream_id for frame in manifest.frames]
        seen = self.observer.order
        if not ids or ids[-1] not in self.observer.frames:
            return "a frame the capture never wrote"
        last = seen.index(ids[-1])
        if ids != seen[last - len(ids) + 1 : last + 1]:
            return "frames not consecutive"
        moment = manifest.event_time.timestamp() * 1e6
        if self.observer.frames[ids[-1]] > moment:
            return "a frame from after the event"
        if last + 1 < len(seen) and self.observer.frames[seen[last + 1]] <= moment:
            return "a newer frame at or before the event was left out"
        indexes = [frame.source_index for frame in manifest.frames]
        if any(b not in {a + 1, 0} for a, b in itertools.pairwise(indexes)):
            return f"source frames not consecutive: {indexes}"
        return None

    def _wrong_pixels(self, manifest: Manifest, path: Path) -> str | None:
        """Each PNG must hash as listed and show the source frame the capture wrote."""
        for frame in manifest.frames:
            data = (path / frame.file).read_bytes()
            if hashlib.sha256(data).hexdigest() != frame.sha256:
                return f"{frame.file}: SHA-256 differs"
            decoded = cv2.imread(str(path / frame.file), cv2.IMREAD_UNCHANGED)
            if decoded is None or read_index(decoded) != frame.source_index:
                return f"{frame.file}: the picture is not source frame {frame.source_index}"
        return None

    def strays(self, recordings: dict[str, Recording]) -> list[str]:
        """Files and folders no final recording accounts for."""
        root = self.work / "recordings"
        found = []
        staging = root / ".staging"
        if staging.is_dir():
            found += [f".staging/{entry.name}" for entry in staging.iterdir()]
        for folder in root.glob("chaos/*/*"):
            recording = recordings.get(folder.name)
            if recording is None or recording.path != str(folder):
                found.append(str(folder.relative_to(root)))
        return found


def run(args: argparse.Namespace) -> int:
    """Start, load, break, settle, judge; print the report."""
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sco-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(work, args)
    chaos.start()
    try:
        threads = [
            threading.Thread(target=chaos.send_events, daemon=True),
            threading.Thread(target=chaos.inject_faults, daemon=True),
        ]
        for thread in threads:
            thread.start()
        time.sleep(args.duration)
        chaos.stopping.set()
        for thread in threads:
            thread.join(timeout=60)
        time.sleep(4)  # the last posts' retries
        recordings = chaos.settle(timeout=args.settle)
        report = judge(chaos, recordings)
    finally:
        chaos.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(report.text)
    return 0 if report.passed else 1


@dataclass
class Report:
    """The markdown report and whether every goal was met."""

    text: str
    passed: bool
    failures: list[str] = field(default_factory=list)


def judge(chaos: Chaos, recordings: dict[str, Recording]) -> Report:
    """Check every goal; build the tables."""
    by_transaction = {r.transaction_id: r for r in recordings.values()}
    failures: list[str] = []
    accepted: dict[str, Sent] = {}
    for sent in chaos.sent:
        if sent.code == "202" or sent.via == "mqtt":
            recording = by_transaction.get(sent.transaction_id)
            if recording is None:
                failures.append(f"{sent.transaction_id} ({sent.via}) was accepted but never stored")
                continue
            accepted[recording.recording_id] = sent
    outcome: dict[str, str] = {}
    for recording_id in accepted:
        recording = recordings[recording_id]
        outcome[recording_id] = verdict(chaos, recording, failures)
    failures += [f"stray: {path}" for path in chaos.strays(recordings)]
    text = tables(chaos, recordings, accepted, outcome, failures)
    return Report(text, not failures, failures)


def verdict(chaos: Chaos, recording: Recording, failures: list[str]) -> str:
    """What became of one accepted event, checked against the goals."""
    rid = recording.recording_id
    if not recording.status.is_final:
        failures.append(f"{rid} still {recording.status.value}")
        return "not final"
    if recording.status.value == "complete":
        wrong = chaos.exact(recording)
        if wrong:
            failures.append(f"{rid} complete but {wrong}")
            return "complete, wrong frames"
        return "complete, exact frames"
    if not recording.reason:
        failures.append(f"{rid} {recording.status.value} without a reason")
    if not chaos.disturbed(recording):
        failures.append(f"{rid} {recording.status.value} with no fault near it: {recording.reason}")
    return f"{recording.status.value}: {short(recording.reason)}"


def short(reason: str | None) -> str:
    """A reason without its numbers, to group alike ones."""
    text = (reason or "").split(":")[0]
    return "".join("#" if char.isdigit() else char for char in text)[:70]


def tables(
    chaos: Chaos,
    recordings: dict[str, Recording],
    accepted: dict[str, Sent],
    outcome: dict[str, str],
    failures: list[str],
) -> str:
    """The report: the run, then one table per fault kind."""
    seconds = {
        rid: (recordings[rid].updated_at - recordings[rid].received_at).total_seconds()
        for rid in accepted
    }
    codes = Counter(sent.code for sent in chaos.sent)
    timeline = ", ".join(
        f"{fault.kind} {fault.killed - chaos.started:.0f}-{fault.restarted - chaos.started:.0f} s"
        for fault in chaos.faults
    )
    lines = [
        f"events sent: {len(chaos.sent)} over {chaos.args.duration:g} s "
        f"({Counter(sent.via for sent in chaos.sent)}); answers: {dict(codes)}",
        f"accepted: {len(accepted)}; final: "
        f"{sum(recordings[rid].status.is_final for rid in accepted)}; "
        f"event to final p50 {percentile(seconds, 50):.2f} s, p99 {percentile(seconds, 99):.2f} s,"
        f" max {max(seconds.values(), default=0):.2f} s",
        f"outcomes: {dict(Counter(outcome.values()))}",
        f"jobs run more than once (taken over from a dead worker, or requeued): "
        f"{sum((recordings[rid].deliveries or 0) > 1 for rid in accepted)}",
        f"faults: {dict(Counter(fault.kind for fault in chaos.faults))}; "
        f"stray files: {sum(failure.startswith('stray') for failure in failures)}",
        f"fault timeline (killed-restarted, from the first event): {timeline}",
        "",
    ]
    near: dict[str, list[str]] = defaultdict(list)
    for rid, sent in accepted.items():
        for fault in chaos.faults:
            if fault.killed - 5 <= sent.sent_at <= (fault.restarted or fault.killed) + 10:
                near[fault.kind].append(rid)
    for kind in sorted({fault.kind for fault in chaos.faults}):
        ids = sorted(set(near[kind]))
        kills = sum(fault.kind == kind for fault in chaos.faults)
        worst = max((seconds[rid] for rid in ids), default=0.0)
        lines += [
            f"### {kind}: {kills} kills; {len(ids)} events accepted from 5 s before a kill to "
            f"10 s after its restart",
            "",
            "| outcome | events |",
            "|---|---|",
            *(f"| {name} | {count} |" for name, count in Counter(outcome[r] for r in ids).items()),
            f"| slowest to final | {worst:.1f} s |",
            "",
        ]
    lines.append(
        "PASSED: every goal met" if not failures else "FAILED:\n- " + "\n- ".join(failures[:50])
    )
    return "\n".join(lines)


def percentile(values: dict[str, float], share: float) -> float:
    """The value below which `share` % of the values lie."""
    ordered = sorted(values.values())
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * share / 100))]


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=2.0, help="events per second")
    parser.add_argument("--seed", type=int, default=1, help="which faults, when")
    parser.add_argument("--mqtt", action="store_true", help="also send events over MQTT")
    parser.add_argument("--settle", type=float, default=900.0, help="seconds to wait for finals")
    parser.add_argument("--keep", help="work in this folder and keep it (logs, recordings)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"faults to inject, of {','.join(KINDS)}"
    )
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
