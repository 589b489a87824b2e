"""Argon2id password hashing, off the event loop and bounded in how many run at once.

A hash costs ARGON2_MEMORY_COST_KIB of memory and tens of milliseconds of CPU. Run inline,
one login would stall every other request on the event loop; run unbounded in threads, a
burst of logins would allocate memory without limit. So each hash runs in a worker thread
(argon2-cffi releases the GIL) behind an asyncio.Semaphore with PASSWORD_HASH_CONCURRENCY
permits: extra logins wait their turn without holding memory or a thread.

The worker threads are the hasher's own (not asyncio's default executor) and run at a lower
scheduling priority where the OS allows it: when every core is busy hashing, the event loop
thread still gets a core at once, so health probes and ordinary requests stay fast while
hashing keeps all the CPU the loop does not need.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# OWASP Password Storage Cheat Sheet recommends argon2id with m=19 MiB, t=2, p=1 at least;
# one more pass makes it stronger at the same memory (about 50 ms on a shared core).
ARGON2_MEMORY_COST_KIB = 19_456
ARGON2_TIME_COST = 3
ARGON2_PARALLELISM = 1
# What an unknown user's login is verified against, so it takes the time of a known user's:
# an argon2id hash, with the parameters above, of a random password nobody kept. It only burns
# time (the login fails whatever it says), so it need not be secret; built once here instead
# of by every process at start (a hash of CPU each). tests/auth/test_passwords.py checks that
# its parameters are the ones above.
UNKNOWN_USER_HASH = (
    "$argon2id$v=19$m=19456,t=3,p=1$KLetX66uKch4UWQPE5ELJQ$4Cb8D4eE3rawbi5gaGCuTsEtFdAnhjfpChBQ5LNraoc"
)
# How much nicer than the event loop the hashing threads run (Linux: per-thread nice value).
HASH_THREAD_NICENESS = 10

T = TypeVar("T")


def normalise_password(password: str) -> str:
    """NFKC, as NIST SP 800-63B asks, so the same password typed on any keyboard matches."""
    return unicodedata.normalize("NFKC", password)


def build_password_hash(
    *,
    memory_cost: int = ARGON2_MEMORY_COST_KIB,
    time_cost: int = ARGON2_TIME_COST,
    parallelism: int = ARGON2_PARALLELISM,
) -> PasswordHash:
    return PasswordHash(
        (Argon2Hasher(memory_cost=memory_cost, time_cost=time_cost, parallelism=parallelism),)
    )


def default_concurrency(configured: int | None) -> int:
    return configured or os.cpu_count() or 1


def lower_thread_priority() -> None:
    # On Linux setpriority on a thread id renices that thread only; elsewhere, or when the
    # OS refuses, hashing simply runs at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)


class PasswordHasher:
    """Hash and verify passwords in threads, at most `concurrency` at a time."""

    def __init__(self, concurrency: int, password_hash: PasswordHash | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._semaphore = asyncio.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="argon2", initializer=lower_thread_priority
        )
        self._hash = password_hash or build_password_hash()
        # Other parameters than the module's get a dummy of their own (prepare()).
        self._dummy_hash: str | None = UNKNOWN_USER_HASH if password_hash is None else None

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        async with self._semaphore:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _run_hash(self, password: str) -> str:
        return await self._in_thread(self._hash.hash, normalise_password(password))

    async def hash(self, password: str) -> str:
        return await self._run_hash(password)

    async def verify_and_update(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one uses outdated parameters)."""
        return await self._in_thread(
            self._hash.verify_and_update, normalise_password(password), password_hash
        )

    async def verify(self, password: str, password_hash: str) -> bool:
        valid, _ = await self.verify_and_update(password, password_hash)
        return valid

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verify, for an unknown user, so timing tells nothing."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._run_hash(secrets.token_urlsafe(16))
        await self.verify_and_update(password, self._dummy_hash)

    async def prepare(self) -> None:
        """Have the dummy hash ready, so the first unknown-user login is not faster."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._run_hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
