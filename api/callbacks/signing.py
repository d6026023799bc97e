"""Standard Webhooks signatures: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"{webhook-id}.{webhook-timestamp}.{body}"``, keyed with the base64 part of a ``whsec_``
secret. TASKS_WEBHOOK_SECRET may hold several secrets, space-separated: each signs every
delivery (its signatures space-separated), so that a receiver can move to a new secret while
the old one still verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "whsec_"


class SecretError(ValueError):
    """TASKS_WEBHOOK_SECRET is not a list of ``whsec_…`` secrets."""


def parse_secrets(text: str) -> tuple[bytes, ...]:
    """The keys of TASKS_WEBHOOK_SECRET's secrets (space-separated ``whsec_<base64>``)."""
    keys = []
    for n, secret in enumerate(text.split(), start=1):
        encoded = secret.removeprefix(PREFIX)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not secret.startswith(PREFIX) or len(key) < 16:
            # Never the secret itself: it would land in a log.
            raise SecretError(
                f"TASKS_WEBHOOK_SECRET: secret {n} is not whsec_ followed by the base64 of at "
                'least 16 random bytes; make one with: python -c "import base64, os; '
                "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
            )
        keys.append(key)
    return tuple(keys)


def sign(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of a delivery: one ``v1,…`` per key."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in keys
    )
