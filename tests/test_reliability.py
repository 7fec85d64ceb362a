"""Faults against real processes: killed workers, restarted Redis, lost sources, full disks,
bursts and shutdowns. Each test is a row of docs/reliability.md."""

from __future__ import annotations

import functools
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from services.kernel import keys
from services.kernel.contracts import Recording, Status, utcnow
from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer, free_port
from services.stores.recordings import RecordingStore
from services.worker.liveness import LOST_REASON
from tests.support.disks import tmpfs
from tests.support.frames import assert_right_frames, load_manifest
from tests.support.observer import StreamObserver
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.videos import write_video
from tests.support.waiting import FINAL, wait_buffered, wait_final, wait_until

# What a worker logs when it adopts frames an earlier attempt at the job wrote.
ADOPTED = re.compile(r"kept [1-9]\d* of \d+ frames an earlier attempt wrote")

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

ApiFactory = Callable[[Settings], httpx.Client]
CaptureFactory = Callable[[Settings], Service]
FINAL_BYTES = {status.encode() for status in FINAL}


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Servers]:
    """A Redis pair of this test's own, to stop, restart or fill; the frame store is capped."""
    frames = RedisServer(
        tmp_path / "frames",
        name="frames",
        options=("--maxmemory", "128mb", "--maxmemory-policy", "noeviction"),
    ).start()
    broker = RedisServer(tmp_path / "broker", persistent=True, name="broker").start()
    yield Servers(frames, broker)
    frames.stop()
    broker.stop()


@pytest.fixture
def private_observer(private: Servers) -> Iterator[Callable[[str], StreamObserver]]:
    """Observers of the private frame store's streams; stopped after the test."""
    client = redis.Redis.from_url(private.frames.url)
    started: list[StreamObserver] = []

    def start(camera_id: str) -> StreamObserver:
        started.append(StreamObserver(client, camera_id).start())
        return started[-1]

    yield start
    for observer in started:
        observer.stop()
    client.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[[str, Settings], Service]]:
    """Starts service processes for a test; stops whatever is still running after it."""
    started: list[Service] = []

    def start(name: str, settings: Settings) -> Service:
        service = Service(name, settings, tmp_path / f"{name}-{len(started)}.log")
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(signal.SIGKILL, timeout=5)


def start_lane(
    settings: Settings, api_factory: ApiFactory, capture_factory: CaptureFactory
) -> httpx.Client:
    """The capture recording and the API answering, ready for events."""
    capture_factory(settings)
    client = api_factory(settings)
    wait_buffered(client, settings.frames)
    return client


def test_a_worker_killed_while_writing_pngs_is_redelivered_and_completes(
    private: Servers,
    tmp_path: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    services: Callable[[str, Settings], Service],
) -> None:
    """SIGKILL mid-write: the job runs again, one complete recording, no half-written leftovers."""
    video = write_video(tmp_path / "big.avi", frames=200, width=1280, height=720)
    settings = base_settings(
        private, tmp_path / "out", source=str(video), frames=40, workers=1,
        png_encoder="cv2", png_compression=9,
    )  # fmt: skip
    client = start_lane(settings, api_factory, capture_factory)
    worker = start_worker(settings, tmp_path / "worker.log")
    recording_id = client.post("/v1/events", json={"transaction_id": "T-kill"}).json()[
        "recording_id"
    ]
    staging = settings.output_dir / ".staging"
    wait_until(lambda: len(list(staging.glob("*/frame_*.png"))) >= 3, what="PNGs being written")
    children = psutil.Process(worker.pid).children(recursive=True)
    assert len(children) == 1
    children[0].send_signal(signal.SIGKILL)
    recording = wait_final(client, recording_id)
    worker.stop()
    assert recording["status"] == "complete", recording
    assert "Worker exited prematurely: signal 9" in worker.log()
    assert ADOPTED.search(worker.log()), "the frames written before the kill were not kept"
    folders = list((settings.output_dir / settings.camera_id).glob("*/*"))
    assert len(folders) == 1
    assert len(list(folders[0].glob("frame_*.png"))) == 40
    assert list(staging.iterdir()) == []


def test_redis_restarted_mid_capture_with_jobs_queued(
    private: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
) -> None:
    """Capture reconnects, the API answers 503 meanwhile, every accepted event ends final."""
    settings = base_settings(private, tmp_path / "out", source=str(video))
    capture = capture_factory(settings)
    client = api_factory(settings)
    wait_buffered(client, settings.frames)  # so any shortfall is the restart's doing
    accepted = [client.post("/v1/events", json={}).json()["recording_id"] for _ in range(5)]
    private.frames.stop()
    private.broker.stop()
    during = client.post("/v1/events", json={})
    assert during.status_code == 503
    assert during.headers["Retry-After"]
    assert client.get("/readyz").status_code == 503
    time.sleep(1)
    private.frames.start(port=private.frames.port)
    private.broker.start(port=private.broker.port)
    frames = redis.Redis.from_url(private.frames.url)
    started = time.monotonic()
    wait_until(lambda: frames.xlen(f"sco:frames:{settings.camera_id}") > 0, 10, "capture back")
    reconnect_seconds = time.monotonic() - started
    assert capture.running
    stream = f"sco:frames:{settings.camera_id}"
    wait_until(lambda: frames.xlen(stream) >= settings.frames, 10, "a full window again")
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        answer = client.post("/v1/events", json={})
        assert answer.status_code == 202, answer.text
        after = answer.json()["recording_id"]
        outcomes = [wait_final(client, recording_id) for recording_id in [*accepted, after]]
    finally:
        worker.stop()
    for outcome in outcomes[:-1]:
        assert outcome["status"] in FINAL
        if outcome["status"] != "complete":
            assert "frame store lost the pinned frames" in str(outcome["reason"])
    assert outcomes[-1]["status"] == "complete", outcomes[-1]["reason"]
    assert reconnect_seconds < 5


def serve_stream(video: Path, port: int) -> subprocess.Popen[bytes]:
    """ffmpeg serving the video as an MJPEG stream over HTTP on loopback, looping."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is not installed: apt-get install ffmpeg")
    return subprocess.Popen(
        [ffmpeg, "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
         "-c:v", "mjpeg", "-q:v", "3", "-f", "mpjpeg", "-listen", "1",
         f"http://127.0.0.1:{port}/lane.mjpg"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize("frame_format", ["bgr", "yuv"])  # decoded by OpenCV, by PyAV
def test_a_network_source_that_stops_and_returns_is_reconnected(
    servers: Servers,
    recordings_root: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    frame_format: str,
) -> None:
    """ffmpeg stops: the heartbeat shows the error and /readyz fails; it returns: frames flow."""
    port = free_port()
    server = serve_stream(video, port)
    settings = base_settings(
        servers, recordings_root, source=f"http://127.0.0.1:{port}/lane.mjpg",
        stale_after=1.5, source_timeout=2.0, frame_format=frame_format,
    )  # fmt: skip
    try:
        capture_factory(settings)
        client = api_factory(settings)
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "stream frames")
        server.kill()
        server.wait()
        wait_until(lambda: client.get("/readyz").status_code == 503, 15, "not ready")
        camera = client.get("/v1/cameras").json()[0]
        assert camera["state"] == "reconnecting"
        assert camera["last_error"]
        server = serve_stream(video, port)
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ready again")
        assert client.get("/v1/cameras").json()[0]["state"] == "running"
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs of the test's own (needs root, as CI has)."""
    with tmpfs(tmp_path / "disk", 24 * 2**20) as mount:
        yield mount


def test_a_full_disk_writes_nothing_and_recovers_once_space_is_freed(
    small_disk: Path,
    private: Servers,
    video: Path,
    tmp_path: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
) -> None:
    """ENOSPC: the job retries with reason `storage full`, no partial folder; freed: complete."""
    settings = base_settings(private, small_disk / "recordings", source=str(video), workers=1)
    settings.output_dir.mkdir()
    filler = small_disk / "filler"
    # Fill every block: dd stops at "No space left on device".
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False
    )
    client = start_lane(settings, api_factory, capture_factory)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        recording_id = client.post("/v1/events", json={}).json()["recording_id"]
        wait_until(
            lambda: "storage full" in str(client.get(f"/v1/recordings/{recording_id}").json()),
            30, "storage full reason",
        )  # fmt: skip
        assert list((settings.output_dir).glob(f"{settings.camera_id}/*/*")) == []
        assert list((settings.output_dir / ".staging").iterdir()) == []
        filler.unlink()
        recording = wait_final(client, recording_id)
    finally:
        worker.stop()
    assert recording["status"] == "complete", recording
    assert "storage full" in worker.log()


def test_a_burst_of_2000_events_loses_none(
    private: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
) -> None:
    """2,000 events in ~10 s, one worker: 202 or 503+Retry-After; every 202 ends final."""
    settings = base_settings(
        private, tmp_path / "out", source=str(video), frames=5, workers=1, max_queued=300,
        max_buffer_frames=200,
    )  # fmt: skip
    client = start_lane(settings, api_factory, capture_factory)
    worker = start_worker(settings, tmp_path / "worker.log")
    frames = redis.Redis.from_url(private.frames.url)
    peak = 0
    stop_sampling = threading.Event()

    def sample_memory() -> None:
        nonlocal peak
        while not stop_sampling.wait(0.1):
            peak = max(peak, int(frames.info("memory")["used_memory"]))

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    started = time.monotonic()

    resets = 0

    def post(number: int) -> httpx.Response:
        nonlocal resets
        time.sleep(max(0.0, started + number / 200 - time.monotonic()))
        body = {"transaction_id": f"B-{number}"}
        for _ in range(3):
            try:
                return client.post("/v1/events", json=body)
            except httpx.TransportError:
                # What a real client does: send the same transaction again; idempotency
                # makes a retry of an event that did get through the same recording.
                resets += 1
        return client.post("/v1/events", json=body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(2000)))
    sent_seconds = time.monotonic() - started
    try:
        codes = Counter(answer.status_code for answer in answers)
        assert set(codes) <= {202, 503}, codes
        assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 503)
        accepted = [a.json()["recording_id"] for a in answers if a.status_code == 202]
        finals = [wait_final(client, recording_id, timeout=300) for recording_id in accepted]
        statuses = Counter(str(recording["status"]) for recording in finals)
    finally:
        stop_sampling.set()
        worker.stop()
    assert sum(statuses.values()) == len(set(accepted)) == codes[202]
    state = redis.Redis.from_url(private.broker.url)
    assert state.zcard(f"sco:recordings:{settings.camera_id}") == len(set(accepted))
    assert set(statuses) <= FINAL
    assert peak < 128 * 1024 * 1024
    summary = f"{codes} in {sent_seconds:.1f} s, {resets} resets retried; final {statuses}"
    print(f"\nburst: {summary}; peak {peak >> 20} MB")


def test_sigterm_to_the_worker_mid_job_loses_no_event(
    private: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
) -> None:
    """A worker stopped mid-work finishes its job; the rest wait in the broker for the next."""
    settings = base_settings(private, tmp_path / "out", source=str(video), workers=1)
    client = start_lane(settings, api_factory, capture_factory)
    worker = start_worker(settings, tmp_path / "first.log")
    ids = [client.post("/v1/events", json={}).json()["recording_id"] for _ in range(10)]
    wait_until(lambda: "received" in worker.log(), what="a job to start")
    assert worker.stop(signal.SIGTERM) == 0
    second = start_worker(settings, tmp_path / "second.log")
    try:
        statuses = [wait_final(client, recording_id)["status"] for recording_id in ids]
    finally:
        second.stop()
    assert set(statuses) <= FINAL
    assert len(statuses) == 10


def test_sigterm_to_the_api_mid_traffic_loses_no_accepted_event(
    private: Servers,
    tmp_path: Path,
    recordings_root: Path,
    services: Callable[[str, Settings], Service],
) -> None:
    """Every event answered 202 before the API stopped is recorded; the rest were never accepted."""
    settings = base_settings(
        private, tmp_path / "out", port=free_port(), workers=1, settle_timeout=0.2
    )
    api = services("api", settings)
    api.wait_for_log("Application startup complete")
    url = f"http://127.0.0.1:{settings.port}"
    answers: list[httpx.Response] = []

    def keep_posting() -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            for number in range(400):
                try:
                    answers.append(
                        client.post("/v1/events", json={"transaction_id": f"S-{number}"})
                    )
                except httpx.TransportError:
                    return

    poster = threading.Thread(target=keep_posting)
    poster.start()
    wait_until(lambda: len(answers) >= 20, what="traffic")
    # uvicorn drains its requests, then exits by the signal it got.
    assert api.stop(signal.SIGTERM) in {0, -signal.SIGTERM}
    assert "Finished server process" in api.log()
    poster.join()
    accepted = {a.json()["recording_id"] for a in answers if a.status_code == 202}
    assert {a.status_code for a in answers} == {202}
    worker = start_worker(settings, tmp_path / "worker.log")
    state = redis.Redis.from_url(private.broker.url)

    def is_final(recording_id: str) -> bool:
        return state.hget(f"sco:recording:{recording_id}", "status") in FINAL_BYTES

    try:
        for recording_id in accepted:
            wait_until(functools.partial(is_final, recording_id), 60, recording_id)
    finally:
        worker.stop()
    assert state.zcard("sco:recordings") == len(accepted)


def worker_holding(workers: list[Service], recording_id: str) -> Service:
    """The worker whose log says it received the recording's job."""
    for worker in workers:
        if recording_id in worker.log():
            return worker
    raise AssertionError(f"no worker received {recording_id}")


def test_a_whole_worker_killed_mid_write_is_taken_over_with_exact_frames(
    private: Servers,
    tmp_path: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    private_observer: Callable[[str], StreamObserver],
) -> None:
    """Process group SIGKILLed while writing: another worker completes it, exact frames, <20 s."""
    video = write_video(tmp_path / "big.avi", frames=300, width=1280, height=720)
    settings = base_settings(
        private, tmp_path / "out", source=str(video), frames=20, workers=1,
        png_encoder="cv2", png_compression=9,
    )  # fmt: skip
    observer = private_observer(settings.camera_id)
    client = start_lane(settings, api_factory, capture_factory)
    workers = [start_worker(settings, tmp_path / f"worker-{n}.log") for n in range(2)]
    observer.wait_for(settings.frames + 5)
    recording_id = client.post("/v1/events", json={"transaction_id": "T-whole"}).json()[
        "recording_id"
    ]
    staging = settings.output_dir / ".staging"
    wait_until(lambda: len(list(staging.glob("*/frame_*.png"))) >= 3, what="PNGs being written")
    victim = worker_holding(workers, recording_id)
    victim.kill_group()
    died = time.monotonic()
    recording = wait_final(client, recording_id, timeout=40)
    took = time.monotonic() - died
    assert recording["status"] == "complete", recording
    assert took < 20, f"took {took:.1f} s after the death"
    print(f"\ntakeover: complete {took:.1f} s after the worker died")
    assert recording["deliveries"] == 2
    assert_right_frames(load_manifest(recording), observer)
    survivor = next(worker for worker in workers if worker is not victim)
    assert recording_id in survivor.log()
    # The frames written before the death were freed from the frame store (and trimmed in
    # the seconds the takeover took): the survivor kept them from the dead one's journal.
    assert ADOPTED.search(survivor.log()), survivor.log()[-2000:]
    folders = list((settings.output_dir / settings.camera_id).glob("*/*"))
    assert [folder.name for folder in folders] == [recording_id]


def test_a_whole_worker_killed_while_waiting_for_frames_after_is_taken_over(
    private: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    private_observer: Callable[[str], StreamObserver],
) -> None:
    """Killed while its job waits for frames_after: the next worker gets before and after."""
    settings = base_settings(private, tmp_path / "out", source=str(video), workers=1)
    observer = private_observer(settings.camera_id)
    client = start_lane(settings, api_factory, capture_factory)
    workers = [start_worker(settings, tmp_path / f"worker-{n}.log") for n in range(2)]
    observer.wait_for(settings.frames + 5)
    body = {"transaction_id": "T-after", "frames_after": 75}  # 3 s of frames at 25 fps
    recording_id = client.post("/v1/events", json=body).json()["recording_id"]
    wait_until(lambda: any(recording_id in w.log() for w in workers), what="the job to start")
    time.sleep(0.5)
    victim = worker_holding(workers, recording_id)
    assert client.get(f"/v1/recordings/{recording_id}").json()["status"] == "running"
    victim.kill_group()
    died = time.monotonic()
    recording = wait_final(client, recording_id, timeout=40)
    took = time.monotonic() - died
    assert took < 20, f"took {took:.1f} s after the death"
    assert recording["status"] == "complete", recording
    print(f"\ntakeover while waiting: complete {took:.1f} s after the worker died")
    assert recording["frames_saved"] == settings.frames + 75
    assert_right_frames(load_manifest(recording), observer)


def pool_process(worker: Service) -> psutil.Process:
    """The worker's one pool process."""
    children = psutil.Process(worker.pid).children(recursive=True)
    assert len(children) == 1, children
    return children[0]


def test_a_job_past_its_hard_time_limit_ends_failed_with_the_reason(
    private: Servers, tmp_path: Path, api_factory: ApiFactory
) -> None:
    """A pool process frozen mid-job (SIGSTOP) is killed at the hard limit: `failed`, why."""
    settings = base_settings(
        private, tmp_path / "out", workers=1, task_time_limit=10, settle_timeout=60
    )
    client = api_factory(settings)
    worker = start_worker(settings, tmp_path / "worker.log")
    recording_id = client.post("/v1/events", json={}).json()["recording_id"]
    wait_until(
        lambda: client.get(f"/v1/recordings/{recording_id}").json()["status"] == "running",
        what="the job to start",
    )
    pool_process(worker).send_signal(signal.SIGSTOP)
    recording = wait_final(client, recording_id, timeout=30)
    assert recording["status"] == "failed"
    assert "TimeLimitExceeded" in str(recording["reason"]), recording
    assert "Hard time limit" in worker.log()


def test_a_job_ending_while_the_state_store_is_down_still_ends_final(
    private: Servers, tmp_path: Path, api_factory: ApiFactory
) -> None:
    """The state store (also the broker) is down when a job ends: the job waits it out and
    stores its outcome once the store is back, in the same run; the worker lives on."""
    settings = base_settings(private, tmp_path / "out", workers=1, settle_timeout=3)
    client = api_factory(settings)
    worker = start_worker(settings, tmp_path / "worker.log")
    recording_id = client.post("/v1/events", json={}).json()["recording_id"]
    wait_until(
        lambda: client.get(f"/v1/recordings/{recording_id}").json()["status"] == "running",
        what="the job to start",
    )
    # No capture runs: the job waits 3 s for frames, then cannot store its outcome.
    private.broker.stop()
    wait_until(lambda: "state store unavailable" in worker.log(), 30, "the outcome to fail")
    private.broker.start(port=private.broker.port)
    recording = wait_final(client, recording_id, timeout=60)
    assert recording["status"] == "failed"
    assert "captured at or before the event" in str(recording["reason"]), recording
    assert recording["deliveries"] == 1
    assert worker.running


def test_a_job_message_lost_on_its_way_to_a_worker_is_queued_again(
    private: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    private_observer: Callable[[str], StreamObserver],
) -> None:
    """kombu can lose a message between BRPOP and unacked (a connection reset; bench.chaos
    met it): the recording's kept copy is queued again and it completes, exact frames."""
    settings = base_settings(
        private, tmp_path / "out", source=str(video), workers=1, worker_heartbeat=0.5,
        worker_lost_after=2,
    )  # fmt: skip
    observer = private_observer(settings.camera_id)
    client = start_lane(settings, api_factory, capture_factory)
    observer.wait_for(settings.frames + 5)
    recording_id = client.post("/v1/events", json={"transaction_id": "T-lost"}).json()[
        "recording_id"
    ]
    state = redis.Redis.from_url(private.broker.url)
    assert state.delete(keys.RECORD_QUEUE) == 1  # taken off the queue, never delivered
    worker = start_worker(settings, tmp_path / "worker.log")
    recording = wait_final(client, recording_id, timeout=30)
    worker.stop()
    assert recording["status"] == "complete", recording
    assert recording["deliveries"] == 1
    assert_right_frames(load_manifest(recording), observer)
    assert f"recording {recording_id}: {LOST_REASON}" in worker.log()
    assert not state.hexists(keys.JOB_MESSAGES, recording_id)


def test_a_recording_left_open_past_its_deadline_is_settled_by_the_sweep(
    private: Servers, tmp_path: Path, api_factory: ApiFactory
) -> None:
    """A recording whose job is gone (no message anywhere) is failed at its deadline, why."""
    settings = base_settings(private, tmp_path / "out", workers=1)
    now = utcnow()
    recording = Recording(
        recording_id=uuid.uuid4().hex, camera_id=settings.camera_id, status=Status.QUEUED,
        frames_requested=10, event_time=now, received_at=now, updated_at=now,
        deadline=now + timedelta(seconds=2),
    )  # fmt: skip

    state_store = redis.Redis.from_url(private.broker.url)
    RecordingStore(state_store).create(recording, None, 60)
    state_store.close()
    client = api_factory(settings)
    start_worker(settings, tmp_path / "worker.log")
    settled = wait_final(client, recording.recording_id, timeout=20)
    assert settled["status"] == "failed"
    assert "no worker started its job by its deadline" in str(settled["reason"])
    state = redis.Redis.from_url(private.broker.url)
    assert state.zcard("sco:open-recordings") == 0


def test_a_job_that_kills_its_pool_process_every_time_fails_after_k_deliveries(
    private: Servers, tmp_path: Path, api_factory: ApiFactory
) -> None:
    """Poison: the pool process dies on each run; after SCO_MAX_DELIVERIES runs, `failed`."""
    settings = base_settings(private, tmp_path / "out", workers=1, settle_timeout=60)
    client = api_factory(settings)
    worker = start_worker(settings, tmp_path / "worker.log")
    recording_id = client.post("/v1/events", json={}).json()["recording_id"]
    url = f"/v1/recordings/{recording_id}"
    for run in range(1, settings.max_deliveries + 1):
        wait_until(
            lambda run=run: client.get(url).json().get("deliveries") == run,  # type: ignore[misc]
            what=f"run {run}",
        )
        pool_process(worker).send_signal(signal.SIGKILL)
    recording = wait_final(client, recording_id, timeout=30)
    assert recording["status"] == "failed"
    assert "died on each of its 3 runs" in str(recording["reason"]), recording
    assert recording["deliveries"] == settings.max_deliveries + 1
    assert "Worker exited prematurely: signal 9" in worker.log()
