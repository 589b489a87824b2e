"""Secrets at rest: authenticated encryption, rotation, clear errors for bad keys."""

from __future__ import annotations

import secrets

import pytest

from agentkeep.config import ConfigError, load_settings
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError, generate_key


def test_ciphertext_holds_no_plaintext_and_round_trips() -> None:
    box = SecretBox([generate_key()])
    ciphertext = box.encrypt("sk-live-abcdef123456")
    assert "sk-live" not in ciphertext
    assert box.encrypt("sk-live-abcdef123456") != ciphertext  # random IV each time
    assert box.decrypt(ciphertext) == "sk-live-abcdef123456"


def test_rotation_new_key_writes_old_key_still_decrypts() -> None:
    old, new = generate_key(), generate_key()
    stored = SecretBox([old]).encrypt("provider-key")
    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt(stored) == "provider-key"
    rewritten = rotated_box.rotate(stored)
    assert SecretBox([new]).decrypt(rewritten) == "provider-key"
    with pytest.raises(SecretDecryptionError):
        SecretBox([old]).decrypt(rewritten)


def test_tampered_or_foreign_ciphertext_is_refused() -> None:
    box = SecretBox([generate_key()])
    ciphertext = box.encrypt("value")
    tampered = ciphertext[:-4] + ("AAAA" if not ciphertext.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretDecryptionError):
        box.decrypt(tampered)
    with pytest.raises(SecretDecryptionError):
        SecretBox([generate_key()]).decrypt(ciphertext)


def test_malformed_keys_are_a_configuration_error_that_hides_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            _env_file=None,
            jwt_secret=secrets.token_urlsafe(40),
            secrets_encryption_keys=f"{generate_key()},not-a-key",
        )
    (problem,) = caught.value.problems
    assert problem.startswith("SECRETS_ENCRYPTION_KEYS: key #2")
    assert "not-a-key" not in problem


def test_keys_are_read_comma_separated_and_redacted() -> None:
    keys = [generate_key(), generate_key()]
    settings = load_settings(
        _env_file=None, jwt_secret=secrets.token_urlsafe(40), secrets_encryption_keys=",".join(keys)
    )
    assert [key.get_secret_value() for key in settings.secrets_encryption_keys] == keys
    shown = repr(settings.redacted())
    assert keys[0] not in shown
    assert keys[1] not in shown
