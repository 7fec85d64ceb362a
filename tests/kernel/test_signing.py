"""The box's signature over metadata.json: what it covers, and what breaks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.kernel.signing import (
    PRIVATE_NAME,
    PUBLIC_NAME,
    SignatureError,
    Signer,
    check_signature,
    load_public_key,
)

MANIFEST: dict[str, Any] = {
    "recording_id": "ab" * 16,
    "camera_id": "lane-1",
    "metadata": {"sku": "4006381333931", "weight_g": 501.5, "nested": [1, {"ü": None}]},
    "frames": [{"file": "frame_0001.png", "sha256": "00" * 32}],
    "hold": None,
}


def signed(signer: Signer, manifest: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps({**manifest, "signature": None})
    return {**json.loads(text), "signature": signer.sign(text).model_dump()}


def test_a_signed_manifest_verifies_and_a_hold_does_not_change_that(tmp_path: Path) -> None:
    signer = Signer.load_or_create(tmp_path / "keys")
    box = load_public_key((tmp_path / "keys" / PUBLIC_NAME).read_text())
    manifest = signed(signer, MANIFEST)
    written = json.dumps(manifest, indent=2)
    assert check_signature(written, box) == signer.public_key
    held = {**manifest, "hold": {"reason": "case 7", "by": "lp", "at": "2026-11-27T10:00:00Z"}}
    assert check_signature(json.dumps(held), box) == signer.public_key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["frames"][0].update(sha256="11" * 32), "changed after it was signed"),
        (lambda m: m["metadata"].update(weight_g=500), "changed after it was signed"),
        (lambda m: m.update(camera_id="lane-2"), "changed after it was signed"),
        (lambda m: m.pop("signature"), "not signed"),
    ],
)
def test_any_other_change_breaks_the_signature(
    tmp_path: Path, change: object, message: str
) -> None:
    signer = Signer.load_or_create(tmp_path)
    manifest = json.loads(json.dumps(signed(signer, MANIFEST)))
    change(manifest)  # type: ignore[operator]
    with pytest.raises(SignatureError, match=message):
        check_signature(json.dumps(manifest), None)


def test_a_manifest_re_signed_by_another_key_is_caught_with_the_box_key(tmp_path: Path) -> None:
    box = Signer.load_or_create(tmp_path / "box")
    forger = Signer(Ed25519PrivateKey.generate())
    forged = json.dumps(signed(forger, {**MANIFEST, "camera_id": "lane-9"}))
    assert check_signature(forged, None) == forger.public_key  # consistent in itself
    with pytest.raises(SignatureError, match="another key than the box's"):
        check_signature(forged, box.key.public_key())


def test_the_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = Signer.load_or_create(tmp_path)
    second = Signer.load_or_create(tmp_path)
    assert first.public_key == second.public_key
    assert (tmp_path / PRIVATE_NAME).stat().st_mode & 0o077 == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [PRIVATE_NAME, PUBLIC_NAME]
