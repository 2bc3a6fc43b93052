"""The installation's export signing key: Ed25519, kept under ``<data_dir>/keys/``, made on first use.

Why a signature on top of the sha256 list: hashes prove the files match the manifest, the
signature proves the manifest is the one this installation wrote (anyone can recompute hashes
after editing a video; nobody without the private key can sign the edited manifest).  The public
key goes into every manifest and is printed by ``sharpeye export key``, so an investigator can
compare it with the one on record.  The private key file is 0600 in a 0700 folder and is created
with ``O_EXCL``, so two exports starting at once end up with the same key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEYS_DIR = "keys"
KEY_NAME = "export-ed25519.pem"
ALGORITHM = "ed25519"


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEYS_DIR / KEY_NAME


def load_or_create_key(data_dir: Path) -> Ed25519PrivateKey:
    """The signing key of ``data_dir``; generated (0600) the first time it is needed."""
    path = key_path(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another export made it a moment ago: use that one
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return loaded


def existing_public_key(data_dir: Path) -> str | None:
    """This installation's public key (base64), or None when no export has made one yet."""
    path = key_path(data_dir)
    return public_key_b64(load_or_create_key(data_dir)) if path.exists() else None


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def fingerprint(public_b64: str) -> str:
    """A short id of a public key to read out on the phone: ``SHA256:`` + the first 16 bytes in hex, grouped."""
    digest = hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:32]
    return "SHA256:" + ":".join(digest[i:i + 4] for i in range(0, 32, 4))


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def check(public_b64: str, data: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the key's Ed25519 signature of exactly ``data``."""
    try:
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
        pub.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True
