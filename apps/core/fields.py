"""Model fields for secrets at rest: stored AES-GCM encrypted, read back as plain values."""

import json

from django.db import models

from apps.core import crypto


class EncryptedTextField(models.TextField):
    """A text secret. The column holds `v1:<kid>:<ciphertext>`; Python sees the plaintext."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else crypto.decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value is None else crypto.encrypt(value)


class EncryptedJSONField(models.TextField):
    """A dict of secrets (channel credentials), encrypted as one JSON document."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else json.loads(crypto.decrypt(value))

    def to_python(self, value):
        if isinstance(value, dict) or value is None:
            return value
        return json.loads(value)

    def get_prep_value(self, value):
        return None if value is None else crypto.encrypt(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj):
        return "<encrypted>"
