"""Tamper evidence: each recording's metadata.json is signed with the box's Ed25519 key.

A hash list alone proves nothing to someone who may have rewritten the list too; a
signature by a key that never leaves the box does. What is signed is the manifest's
canonical form: its JSON parsed, without `hold` (which may change later: a hold is not
evidence) and without the signature itself, dumped with sorted keys and no spaces. Parsing
and dumping plain JSON is stable, so a verifier anywhere recomputes the same bytes.

The key is made once, at the first worker start, beside the recordings (every worker of
the box shares it); its public half is served at GET /v1/signing-key.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.kernel.contracts import Signature

ALGORITHM: Final = "Ed25519"
UNSIGNED_FIELDS = ("hold", "signature")
PRIVATE_NAME, PUBLIC_NAME = "signing-key.pem", "signing-key.pub"


class SignatureError(ValueError):
    """A manifest whose signature is missing, malformed, or does not verify."""


def canonical(manifest_json: bytes | str) -> bytes:
    """The bytes a signature covers, from a manifest as JSON."""
    data: dict[str, Any] = json.loads(manifest_json)
    for name in UNSIGNED_FIELDS:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_text(key: Ed25519PublicKey) -> str:
    """A public key as base64 of its 32 raw bytes (how manifests and the API show it)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from base64 raw bytes or PEM; SignatureError if it is neither."""
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip()))
    except ValueError as error:
        raise SignatureError(f"not an Ed25519 public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Signer:
    """The box's private key."""

    key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        """Base64 of the raw public key."""
        return public_key_text(self.key.public_key())

    def sign(self, manifest_json: bytes | str) -> Signature:
        """The `signature` entry of a manifest."""
        value = self.key.sign(canonical(manifest_json))
        return Signature(
            algorithm=ALGORITHM, public_key=self.public_key, value=base64.b64encode(value).decode()
        )

    @classmethod
    def load_or_create(cls, folder: Path) -> Signer:
        """The key in `folder`, made there first if no process has made it yet (two workers
        starting at once both end up with the one that was linked into place first)."""
        private = folder / PRIVATE_NAME
        if not private.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            temporary = folder / f".{PRIVATE_NAME}.{uuid.uuid4().hex[:8]}"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, private)  # fails if another process got there first
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        loaded = serialization.load_pem_private_key(private.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise SignatureError(f"{private} is not an Ed25519 private key")
        public = loaded.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        public_path = folder / PUBLIC_NAME
        if not public_path.exists() or public_path.read_bytes() != public:
            public_path.write_bytes(public)
        return cls(loaded)


def check_signature(manifest_json: bytes | str, expected_key: Ed25519PublicKey | None) -> str:
    """Verify a manifest's signature; with `expected_key`, also that the box's key made it.
    The signer's public key (base64); SignatureError saying what is wrong otherwise."""
    data = json.loads(manifest_json)
    entry = data.get("signature")
    if not isinstance(entry, dict) or entry.get("algorithm") != ALGORITHM:
        raise SignatureError("metadata.json is not signed")
    signer = load_public_key(str(entry.get("public_key", "")))
    if expected_key is not None and public_key_text(signer) != public_key_text(expected_key):
        raise SignatureError("metadata.json was signed by another key than the box's")
    try:
        signer.verify(base64.b64decode(str(entry.get("value", ""))), canonical(manifest_json))
    except (InvalidSignature, ValueError):
        raise SignatureError(
            "the signature does not match metadata.json: it was changed after it was signed"
        ) from None
    return public_key_text(signer)
