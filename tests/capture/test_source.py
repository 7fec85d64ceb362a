"""Sources: files loop, bad sources fail with their name, kinds are told apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.capture.source import open_source
from services.capture.spec import SourceError, parse_source, sample_video
from tests.support.videos import read_index, write_video


def test_a_file_loops_back_to_its_first_frame(tmp_path: Path) -> None:
    """Reading past the end starts again at frame 0, with the source index reset."""
    source = open_source(parse_source(str(write_video(tmp_path / "v.avi", frames=5))))
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


def test_a_corrupt_file_names_the_source(tmp_path: Path) -> None:
    """A file OpenCV cannot decode fails with its name."""
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(SourceError, match=r"corrupt\.mp4"):
        open_source(parse_source(str(corrupt))).read()


def test_sources_are_classified_by_form() -> None:
    """Digits are camera indexes, URLs are network streams, `sample` is the bundled clip."""
    assert parse_source("0").kind == "camera"
    assert parse_source("rtsp://127.0.0.1:8554/lane").kind == "network"
    assert parse_source("rtsp://127.0.0.1:8554/lane").is_live
    sample = parse_source("sample")
    assert (sample.kind, Path(sample.target)) == ("file", sample_video())
