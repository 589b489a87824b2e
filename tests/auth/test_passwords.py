"""Password hashing stays off the event loop and never runs more hashes than allowed."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from agentkeep.security import passwords
from agentkeep.security.passwords import PasswordHasher, lower_thread_priority


@pytest.fixture(autouse=True)
def _hashing_below_the_event_loop(monkeypatch: pytest.MonkeyPatch, production_password_hashing: None) -> None:
    """Here the hashing threads run at the product's lowered priority and cost (the suite runs
    them at normal priority and a test cost, see tests/conftest.py): these tests are about
    the event loop and the parameters."""
    monkeypatch.setattr(passwords, "lower_thread_priority", lower_thread_priority)


class CountingHash(PasswordHash):
    """The real argon2 hash, counting how many run at the same moment."""

    def __init__(self) -> None:
        super().__init__((Argon2Hasher(memory_cost=19_456, time_cost=3, parallelism=1),))
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return super().hash(password, salt=salt)
        finally:
            with self._lock:
                self.running -= 1


async def test_hashes_run_in_threads_bounded_by_the_semaphore() -> None:
    counting = CountingHash()
    hasher = PasswordHasher(concurrency=2, password_hash=counting)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    hashes = await asyncio.gather(*(hasher.hash(f"passphrase number {n}") for n in range(8)))
    elapsed = time.perf_counter() - started
    task.cancel()
    hasher.close()
    assert len(set(hashes)) == 8
    assert counting.peak == 2
    # The loop kept turning while hashing: at least a fifth of the possible ticks happened.
    assert ticks >= (elapsed / 0.005) / 5


async def test_verify_accepts_the_right_password_only_and_normalises_unicode() -> None:
    hasher = PasswordHasher(concurrency=1)
    stored = await hasher.hash("ﬁne café passphrase")  # 'ﬁ' ligature, composed é
    assert await hasher.verify("fine cafe\u0301 passphrase", stored)
    assert not await hasher.verify("fine cafe passphrase", stored)
    hasher.close()


async def test_outdated_parameters_produce_a_new_hash_on_verify() -> None:
    weak = PasswordHasher(1, PasswordHash((Argon2Hasher(memory_cost=8192, time_cost=1, parallelism=1),)))
    current = PasswordHasher(1)
    old = await weak.hash("a passphrase to upgrade")
    valid, new = await current.verify_and_update("a passphrase to upgrade", old)
    weak.close()
    current.close()
    assert valid
    assert new is not None
    assert "m=19456,t=3,p=1" in new


async def test_the_unknown_user_hash_costs_what_a_stored_hash_costs() -> None:
    """The prebuilt dummy is argon2id with today's parameters (an outdated one would also be
    rehashed on every unknown-user login), and an ordinary password does not match it."""
    hasher = PasswordHasher(1)
    reference = Argon2Hasher(memory_cost=19_456, time_cost=3, parallelism=1)  # docs/SECURITY.md
    try:
        assert reference.identify(passwords.UNKNOWN_USER_HASH)
        assert not reference.check_needs_rehash(passwords.UNKNOWN_USER_HASH)
        assert await hasher.verify_and_update("hunter2 hunter2", passwords.UNKNOWN_USER_HASH) == (False, None)
        await hasher.prepare()  # nothing to compute: the module's parameters have their dummy
    finally:
        hasher.close()
