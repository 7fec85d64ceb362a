"""A recording's files over HTTP: each frame, the thumbnail, and the whole folder as a zip.

The API reads the recordings root (mounted read-only under compose) through `Storage`,
whose paths come from checked IDs and stay inside the root; a frame is named by its number
in metadata.json, never by a path from the request.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Header, HTTPException, Path, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse
from zipstream import ZIP_STORED, ZipStream

from services.api.context import Context
from services.api.deps import READ, ContextDep
from services.api.routes.recordings import MISSING, RecordingId, existing
from services.kernel.contracts import Manifest, Recording
from services.kernel.signing import ALGORITHM, PUBLIC_NAME, load_public_key, public_key_text
from services.stores.storage import THUMBNAIL, StorageError, check_folder

router = APIRouter(prefix="/v1", tags=["files"], dependencies=[READ])

IMMUTABLE = "private, max-age=31536000, immutable"  # a written frame never changes
NO_FILES = {**MISSING, 409: {"description": "The recording has no files (yet, or ever)"}}


@dataclass(frozen=True)
class Folder:
    """A final recording's committed folder and its manifest."""

    recording: Recording
    path: FilePath
    manifest: Manifest


@router.get(
    "/recordings/{recording_id}/frames/{number}",
    responses={**NO_FILES, 304: {"description": "Not modified (If-None-Match)"}},
    response_class=FileResponse,
)
async def get_frame(
    recording_id: RecordingId,
    number: Annotated[int, Path(ge=1, description="1 = the oldest frame saved.")],
    context: ContextDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """One saved frame, the PNG as written; its ETag is its SHA-256 from metadata.json."""
    folder = await _folder(context, recording_id)
    frames = folder.manifest.frames
    if number > len(frames):
        raise HTTPException(404, f"recording {recording_id} has {len(frames)} frames")
    frame = frames[number - 1]
    etag = f'"{frame.sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return FileResponse(folder.path / frame.file, media_type="image/png", headers=headers)


@router.get("/recordings/{recording_id}/thumbnail", responses=NO_FILES, response_class=FileResponse)
async def get_thumbnail(recording_id: RecordingId, context: ContextDep) -> Response:
    """A small JPEG of the newest frame, made once by the worker that wrote the recording."""
    folder = await _folder(context, recording_id)
    path = folder.path / THUMBNAIL
    if not path.is_file():
        raise HTTPException(404, f"recording {recording_id} has no thumbnail")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": IMMUTABLE})


@router.get(
    "/recordings/{recording_id}/download",
    responses={**NO_FILES, 200: {"content": {"application/zip": {}}}},
    response_class=StreamingResponse,
)
async def download(recording_id: RecordingId, context: ContextDep) -> Response:
    """The folder as a zip (PNGs, metadata.json, thumbnail) with a SHA256SUMS file, streamed
    from disk as it is read: `sha256sum -c SHA256SUMS` checks it after unpacking."""
    folder = await _folder(context, recording_id)
    archive = await asyncio.to_thread(_zip_of, folder)
    name = f"{folder.recording.camera_id}-{recording_id}.zip"
    return StreamingResponse(
        iter(archive),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(len(archive)),
        },
    )


@router.get("/recordings/{recording_id}/metadata", responses=NO_FILES)
async def get_metadata(recording_id: RecordingId, context: ContextDep) -> Manifest:
    """The recording's metadata.json: the event's metadata, the envelope and every frame."""
    return (await _folder(context, recording_id)).manifest


class Verification(BaseModel):
    """The answer of a server-side check of a recording's files."""

    recording_id: str
    ok: bool
    frames: int
    problems: list[str]


@router.post("/recordings/{recording_id}/verify", responses=NO_FILES)
async def verify_recording(recording_id: RecordingId, context: ContextDep) -> Verification:
    """Hash every frame now and compare with metadata.json (as `sco-recorder verify`)."""
    folder = await _folder(context, recording_id)
    box_key = await asyncio.to_thread(_box_key, context)
    manifest, problems = await asyncio.to_thread(check_folder, folder.path, box_key)
    return Verification(
        recording_id=recording_id, ok=not problems, frames=len(manifest.frames),
        problems=problems,
    )  # fmt: skip


class SigningKey(BaseModel):
    """The box's public key: what a recording's metadata.json signature must verify with."""

    algorithm: str = ALGORITHM
    public_key: str = Field(description="Base64 of the raw 32-byte Ed25519 public key.")
    pem: str


@router.get("/signing-key", responses={404: {"description": "No worker made the key yet"}})
async def signing_key(context: ContextDep) -> SigningKey:
    """The public half of the key that signs every recording's metadata.json."""
    key = await asyncio.to_thread(_box_key, context)
    if key is None:
        raise HTTPException(404, "no signing key yet: a worker makes it when it starts")
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(public_key=public_key_text(key), pem=pem.decode())


def _box_key(context: Context) -> Ed25519PublicKey | None:
    try:
        text = (context.settings.keys_dir.resolve() / PUBLIC_NAME).read_text()
    except FileNotFoundError:
        return None
    return load_public_key(text)


async def _folder(context: Context, recording_id: str) -> Folder:
    """The recording's folder, or 404/410 (no such recording) or 409 (no files)."""
    recording = await existing(context, recording_id)
    if not recording.status.is_final:
        raise HTTPException(409, f"recording {recording_id} is {recording.status.value}: "
                                 "its files are not written yet")  # fmt: skip
    try:
        found = await asyncio.to_thread(context.storage.find, recording)
    except StorageError as error:  # an ID that cannot name a folder
        raise HTTPException(404, str(error)) from None
    if found is None:
        raise HTTPException(409, f"recording {recording_id} has no files ({recording.reason})")
    manifest, path = found
    return Folder(recording, path, manifest)


def _zip_of(folder: Folder) -> ZipStream:
    """The zip, stored (PNGs do not compress), its size known before the first byte.

    SHA256SUMS lists each frame with the hash the worker wrote into metadata.json, and the
    other files as they are: a frame changed since it was written fails `sha256sum -c`.
    """
    prefix = folder.path.name
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    recorded = {frame.file: frame.sha256 for frame in folder.manifest.frames}
    sums = []
    for path in sorted(folder.path.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        archive.add_path(str(path), f"{prefix}/{path.name}")
        digest = recorded.get(path.name) or hashlib.sha256(path.read_bytes()).hexdigest()
        sums.append(f"{digest}  {path.name}\n")
    archive.add("".join(sums).encode(), f"{prefix}/SHA256SUMS")
    return archive
