"""Signed ticket codes a gate can check offline.

The QR code carries `<ticket code>.<signature>`: an Ed25519 signature over
`<tenant slug>/<ticket code>` under the tenant's key, in unpadded RFC 4648 base32.
Base32 keeps the whole payload inside the QR alphanumeric set (A-Z, 0-9, `-`, `.`),
which gives a smaller symbol than byte mode and scans more easily. Gates fetch the
public key once from `GET /tenants/{slug}/ticket-key`; the private key never leaves
the server.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ticketing.db import Database
from ticketing.kit.clock import utcnow
from ticketing.ticket.codes import looks_like_ticket_code
from ticketing.ticket.repository import SigningKeyRepository

ALGORITHM = "Ed25519"
SEPARATOR = "."
PAYLOAD_FORMAT = "<ticket_code>.<signature>"
SIGNED_MESSAGE = "<tenant_slug>/<ticket_code>"
SIGNATURE_ENCODING = "base32 (RFC 4648, upper case, no padding) of the 64-byte Ed25519 signature"


def b64url(raw: bytes) -> str:
    """Unpadded base64url, as keys are published."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_message(slug: str, code: str) -> bytes:
    """The bytes a ticket's signature covers: the tenant binds the code to one issuer."""
    return f"{slug}/{code}".encode("ascii")


@dataclass(frozen=True)
class KeyPair:
    """Raw 32-byte Ed25519 keys."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair."""
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        return cls(private=private, public=public_bytes(key.public_key()))


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_pem(public: bytes) -> str:
    """The public key as SubjectPublicKeyInfo PEM."""
    key = Ed25519PublicKey.from_public_bytes(public)
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def sign_code(private: bytes, slug: str, code: str) -> str:
    """The QR payload `<code>.<signature>` for one ticket of tenant `slug`."""
    signature = Ed25519PrivateKey.from_private_bytes(private).sign(signed_message(slug, code))
    return code + SEPARATOR + base64.b32encode(signature).rstrip(b"=").decode("ascii")


def verify_signed_code(public: bytes | Ed25519PublicKey, slug: str, payload: str) -> str | None:
    """The ticket code if `payload` was signed by this tenant's key; None otherwise."""
    code, sep, encoded = payload.strip().partition(SEPARATOR)
    if not sep or not looks_like_ticket_code(code):
        return None
    try:
        signature = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
        key = public if isinstance(public, Ed25519PublicKey) else (
            Ed25519PublicKey.from_public_bytes(public))
        key.verify(signature, signed_message(slug, code))
    except (binascii.Error, ValueError, InvalidSignature):
        return None
    return code


def tenant_key(db: Database, tenant_id: int) -> KeyPair:
    """The tenant's key pair, generated and stored on first need.

    Two workers needing it at once both generate one; the unique tenant_id keeps the
    first insert and both read that one back.
    """
    with db.transaction(readonly=True) as session:
        row = SigningKeyRepository(session, tenant_id).find()
    if row is None:
        fresh = KeyPair.generate()
        with db.transaction() as session:
            repo = SigningKeyRepository(session, tenant_id)
            repo.add_unless_present({"algorithm": ALGORITHM, "public_key": b64url(fresh.public),
                                     "private_key": b64url(fresh.private),
                                     "created_at": utcnow()})
            row = repo.find()
    assert row is not None
    return KeyPair(private=from_b64url(row.private_key), public=from_b64url(row.public_key))
