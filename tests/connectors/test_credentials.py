import json
import logging

import pytest
from django.core import serializers
from django.db import connection as db
from django.db import transaction

from connectors import credentials
from connectors.credentials import Secrets, decrypt, encrypt
from connectors.models import ToolConnection
from tests.factories import ToolConnectionFactory

SECRET = "tok-SECRET-123"


@pytest.fixture
def fresh_cipher(settings):
    credentials._cipher.cache_clear()
    yield settings
    credentials._cipher.cache_clear()


@pytest.mark.django_db
def test_credentials_are_ciphertext_in_the_database_and_in_dumps():
    connection = ToolConnectionFactory(credentials={"email": "bot@example.test", "api_token": SECRET})
    with db.cursor() as cursor:
        cursor.execute("select credentials from connectors_toolconnection where id = %s", [connection.pk])
        (stored,) = cursor.fetchone()
    assert SECRET not in stored and "bot@example.test" not in stored
    assert ToolConnection.objects.get(pk=connection.pk).credentials["api_token"] == SECRET
    dump = serializers.serialize("json", ToolConnection.objects.all())
    assert SECRET not in dump


def test_secrets_never_show_in_repr_str_logs_or_json(caplog):
    secrets = Secrets({"api_token": SECRET})
    assert SECRET not in repr(secrets) and SECRET not in str(secrets)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("connecting with %s", secrets)
    assert SECRET not in caplog.text
    with pytest.raises(TypeError):
        json.dumps(secrets)


def test_empty_updates_keep_stored_values():
    merged = Secrets({"email": "a@example.test", "api_token": SECRET}).merged(
        {"api_token": "", "email": "b@x.test"}
    )
    assert dict(merged) == {"email": "b@x.test", "api_token": SECRET}


def test_keys_rotate_old_ciphertext_still_decrypts(fresh_cipher):
    fresh_cipher.CREDENTIALS_KEY = "old-key"
    token = encrypt({"api_token": SECRET})
    credentials._cipher.cache_clear()
    fresh_cipher.CREDENTIALS_KEY = "new-key,old-key"
    assert decrypt(token)["api_token"] == SECRET
    credentials._cipher.cache_clear()
    fresh_cipher.CREDENTIALS_KEY = "another-key"
    unreadable = decrypt(token)
    assert unreadable.unreadable and len(unreadable) == 0


@pytest.mark.django_db
def test_unreadable_credentials_are_not_overwritten(fresh_cipher):
    fresh_cipher.CREDENTIALS_KEY = "first"
    connection = ToolConnectionFactory(credentials={"api_token": SECRET})
    credentials._cipher.cache_clear()
    fresh_cipher.CREDENTIALS_KEY = "second"
    loaded = ToolConnection.objects.get(pk=connection.pk)
    assert loaded.credentials.unreadable
    with pytest.raises(ValueError, match="could not be decrypted"), transaction.atomic():
        loaded.save()
    loaded.name = "renamed"
    loaded.save(update_fields=["name"])  # other fields stay editable
