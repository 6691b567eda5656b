"""Credentials encrypted at rest (Fernet), and a value type that refuses to be shown or serialised.

The key comes from VSM_CREDENTIALS_KEY (comma-separated to rotate: the first encrypts, all decrypt).
Without it, a key is derived from the Django secret key, so the embedded mode works out of the box.
"""

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class Secrets(Mapping):
    """Decrypted credentials. Reading a value is explicit; repr, str and JSON never show one."""

    def __init__(self, values: Mapping[str, str] | None = None, *, unreadable: bool = False):
        self._values = dict(values or {})
        self.unreadable = unreadable

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other) -> bool:
        return isinstance(other, Secrets) and self._values == other._values

    __hash__ = None

    def __repr__(self) -> str:
        state = "unreadable" if self.unreadable else f"{len(self._values)} hidden"
        return f"<Secrets: {state}>"

    __str__ = __repr__

    def merged(self, updates: Mapping[str, str]) -> "Secrets":
        """A copy with `updates` applied; empty values leave the stored value in place."""
        values = dict(self._values)
        values.update({name: value for name, value in updates.items() if value})
        return Secrets(values)


def _fernet_key(material: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest())


@cache
def _cipher() -> MultiFernet:
    configured = [key.strip() for key in settings.CREDENTIALS_KEY.split(",") if key.strip()]
    materials = configured or [f"vsm-credentials:{settings.SECRET_KEY}"]
    return MultiFernet([Fernet(_fernet_key(material)) for material in materials])


def encrypt(values: Mapping[str, str]) -> str:
    return _cipher().encrypt(json.dumps(dict(values), sort_keys=True).encode()).decode()


def decrypt(token: str) -> Secrets:
    if not token:
        return Secrets()
    try:
        return Secrets(json.loads(_cipher().decrypt(token.encode())))
    except (InvalidToken, ValueError):
        return Secrets(unreadable=True)


class EncryptedSecretsField(models.TextField):
    """Stores `Secrets` as Fernet ciphertext; the database and dumps only ever hold ciphertext."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value or "")

    def to_python(self, value):
        if isinstance(value, Secrets):
            return value
        if isinstance(value, Mapping):
            return Secrets(value)
        return decrypt(value or "")

    def get_prep_value(self, value):
        if isinstance(value, str):
            return value  # already ciphertext
        secrets = value if isinstance(value, Secrets) else Secrets(value or {})
        if secrets.unreadable:
            raise ValueError("refusing to overwrite credentials that could not be decrypted")
        return encrypt(secrets)

    def value_to_string(self, obj):
        return self.get_prep_value(self.value_from_object(obj))
