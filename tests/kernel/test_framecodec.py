"""The frame codec: BGR entries as they always were, I420 entries marked and turned into the
same picture the worker saves."""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import pytest

from services.kernel.framecodec import (
    I420,
    UNSPECIFIED,
    Colour,
    FrameCodecError,
    Pixels,
    decode_entry,
    encode_entry,
    to_bgr,
)
from tests.support.videos import draw_index, read_index


def as_reply(fields: dict[str, bytes | int]) -> dict[bytes, bytes]:
    """The fields as Redis gives them back."""
    return {key.encode(): value if isinstance(value, bytes) else str(value).encode()
            for key, value in fields.items()}  # fmt: skip


def test_a_bgr_entry_keeps_its_layout_and_comes_back_equal() -> None:
    """No format field on a BGR entry: streams written before I420 existed read the same."""
    pixels = draw_index(77, 64, 48)
    fields = encode_entry(pixels, source_index=77, sequence=3, captured_us=1_000)
    assert "f" not in fields
    frame = decode_entry(b"1-0", as_reply(fields))
    assert frame.pixel_format == "bgr"
    assert (frame.height, frame.width) == (48, 64)
    assert np.array_equal(frame.picture(), pixels)


def test_an_i420_entry_is_marked_and_gives_the_converted_picture() -> None:
    """The planes travel as they are, half of BGR's bytes, with their colour description;
    the picture is their conversion by that description, and carries the frame's index."""
    planes = cast("Pixels", cv2.cvtColor(draw_index(1234, 192, 48), cv2.COLOR_BGR2YUV_I420))
    bt709 = Colour(space=1, range=1)
    fields = encode_entry(planes, 1234, sequence=1, captured_us=5, pixel_format=I420, colour=bt709)
    assert (fields["f"], fields["cs"], fields["cr"]) == (b"i420", 1, 1)
    assert len(fields["data"]) == 192 * 48 * 3 // 2  # type: ignore[arg-type]
    frame = decode_entry("2-0", as_reply(fields))
    assert (frame.pixel_format, frame.colour) == (I420, bt709)
    assert (frame.height, frame.width) == (48, 192)
    picture = frame.picture()
    assert picture.shape == (48, 192, 3)
    assert read_index(picture) == 1234
    assert np.array_equal(to_bgr(planes, I420, bt709), picture)
    assert not np.array_equal(to_bgr(planes, I420), picture)  # BT.601 renders it otherwise


def test_an_i420_entry_without_a_colour_description_converts_as_bt601() -> None:
    """Entries written before the description was kept read as unspecified: BT.601 in
    limited range, what FFmpeg assumes."""
    planes = cast("Pixels", cv2.cvtColor(draw_index(5, 192, 48), cv2.COLOR_BGR2YUV_I420))
    fields = as_reply(encode_entry(planes, 5, 1, 5, pixel_format=I420))
    del fields[b"cs"], fields[b"cr"]
    frame = decode_entry(b"4-0", fields)
    assert frame.colour == UNSPECIFIED
    assert read_index(frame.picture()) == 5


@pytest.mark.parametrize("shape", [(50, 64), (72, 63), (72, 64, 3)])
def test_planes_that_cannot_be_i420_are_refused(shape: tuple[int, ...]) -> None:
    """Not 3/2 rows of an even-sized picture, or not one plane: refused before it is stored."""
    with pytest.raises(FrameCodecError, match="I420"):
        encode_entry(np.zeros(shape, np.uint8), 0, 0, 0, pixel_format=I420)


def test_an_unknown_pixel_format_is_an_unreadable_entry() -> None:
    """A format this version does not know is not taken for BGR."""
    fields = as_reply(encode_entry(np.zeros((4, 4, 3), np.uint8), 0, 0, 0))
    fields[b"f"] = b"nv12"
    with pytest.raises(FrameCodecError, match="nv12"):
        decode_entry(b"3-0", fields)
