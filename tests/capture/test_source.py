"""Sources: files loop, bad sources fail with their name, kinds are told apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.capture.source import open_source
from services.capture.spec import SourceError, parse_source, sample_video
from services.kernel.framecodec import I420, Colour, to_bgr
from tests.support.videos import read_index, write_h264, write_video


def test_a_file_loops_back_to_its_first_frame(tmp_path: Path) -> None:
    """Reading past the end starts again at frame 0, with the source index reset."""
    source = open_source(
        parse_source(str(write_video(tmp_path / "v.avi", frames=5))), frame_format="bgr"
    )
    indexes = []
    for _ in range(12):
        got = source.read()
        assert got is not None
        pixels, index = got
        assert read_index(pixels) == index
        indexes.append(index)
    source.close()
    assert indexes == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert source.fps == 25.0


def test_a_missing_file_names_the_source(tmp_path: Path) -> None:
    """A path that does not exist fails before anything starts."""
    with pytest.raises(SourceError, match=r"nope\.mp4.*no such file"):
        parse_source(str(tmp_path / "nope.mp4"))


@pytest.mark.parametrize("frame_format", ["bgr", "yuv"])
def test_a_corrupt_file_names_the_source(tmp_path: Path, frame_format: str) -> None:
    """A file the decoder cannot read fails with its name, whichever library opens it."""
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(SourceError, match=r"corrupt\.mp4"):
        open_source(parse_source(str(corrupt)), frame_format=frame_format).read()


def test_an_h264_file_gives_the_decoders_yuv_planes_and_loops(tmp_path: Path) -> None:
    """With SCO_FRAME_FORMAT=yuv an H.264 file's frames come as the decoder made them: I420
    planes, half of BGR's bytes, whose picture carries the frame's index; the file loops."""
    video = write_h264(tmp_path / "v.mp4", frames=5)
    source = open_source(parse_source(str(video)), frame_format="yuv")
    assert source.pixel_format == I420
    indexes = []
    for _ in range(7):
        got = source.read()
        assert got is not None
        planes, index = got
        assert planes.shape == (240 * 3 // 2, 320)
        assert read_index(to_bgr(planes, I420)) == index
        indexes.append(index)
    assert source.position() is not None
    source.close()
    assert indexes == [0, 1, 2, 3, 4, 0, 1]
    assert source.fps == 25.0


def test_a_stream_not_in_yuv_420_is_decoded_to_bgr(tmp_path: Path) -> None:
    """YUV 4:4:4 has no I420 planes: its frames come as BGR, as with OpenCV."""
    video = write_h264(tmp_path / "v.mp4", frames=3, pixel_format="yuv444p")
    source = open_source(parse_source(str(video)), frame_format="yuv")
    assert source.pixel_format == "bgr"
    got = source.read()
    source.close()
    assert got is not None
    pixels, index = got
    assert pixels.shape == (240, 320, 3)
    assert read_index(pixels) == index == 0


BT709 = ("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709")


@pytest.mark.parametrize(
    ("coding", "colour"),
    [
        ("h264", Colour(space=5, range=1)),  # limited range, BT.601 (from the MJPEG it was made of)
        ("h264 bt709", Colour(space=1, range=1)),  # an HD camera's own tags
        ("mjpeg", Colour(space=5, range=2)),  # JPEG's full range (yuvj420p)
    ],
)
def test_the_workers_picture_of_the_planes_is_opencvs_byte_for_byte(
    tmp_path: Path, coding: str, colour: Colour
) -> None:
    """Whatever matrix and range the stream names, the planes a yuv capture holds become,
    in the worker, exactly the BGR frame OpenCV decodes from the same file: a store that
    switches SCO_FRAME_FORMAT saves the same PNGs."""
    if coding == "mjpeg":
        video = write_video(tmp_path / "v.avi", frames=4)
    else:
        video = write_h264(tmp_path / "v.mp4", 4, tags=BT709 if "bt709" in coding else ())
    planar = open_source(parse_source(str(video)), frame_format="yuv")
    opencv = open_source(parse_source(str(video)), frame_format="bgr")
    assert (planar.pixel_format, planar.colour) == (I420, colour)
    for _ in range(4):
        planes, reference = planar.read(), opencv.read()
        assert planes is not None
        assert reference is not None
        assert np.array_equal(to_bgr(planes[0], I420, planar.colour), reference[0])
    planar.close()
    opencv.close()


def test_sources_are_classified_by_form() -> None:
    """Digits are camera indexes, URLs are network streams, `sample` is the bundled clip."""
    assert parse_source("0").kind == "camera"
    assert parse_source("rtsp://127.0.0.1:8554/lane").kind == "network"
    assert parse_source("rtsp://127.0.0.1:8554/lane").is_live
    sample = parse_source("sample")
    assert (sample.kind, Path(sample.target)) == ("file", sample_video())
