"""A process's notification hub: waiters of a topic are woken when it is announced.

The database stays the source of truth: a notification only says "read again". A waiter
that wakes re-reads what it follows; one that is never woken still re-reads after the hub's
safety poll when the hub cannot promise delivery (`reliable` is false: on SQLite, whose
notifications reach only the process that wrote, or on PostgreSQL while the listener is
disconnected). When the listener (re)connects, every waiter is woken to re-read what it may
have missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# How often a waiter re-reads on its own while delivery is not guaranteed.
SAFETY_POLL_SECONDS = 1.0


class Waiter:
    """One subscriber's wake-up flag; `wait` returns whether it was woken (and clears it)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.event = asyncio.Event()

    def wake(self) -> None:
        self.event.set()

    async def wait(self, within: float | None) -> bool:
        """Sleep until woken or for `within` seconds (None: no limit), shortened to the safety
        poll while the hub cannot guarantee delivery. True when woken."""
        if not self.hub.reliable:
            within = SAFETY_POLL_SECONDS if within is None else min(within, SAFETY_POLL_SECONDS)
        try:
            async with asyncio.timeout(within):
                await self.event.wait()
        except TimeoutError:
            return False
        self.event.clear()
        return True


class Hub:
    def __init__(self, *, cross_process: bool) -> None:
        # cross_process: announcements travel through the database to every process (the
        # PostgreSQL listener); otherwise they reach only this process.
        self.cross_process = cross_process
        self.listening = False
        self._waiters: dict[str, set[Waiter]] = {}
        self._callbacks: dict[str, list[Callable[[], None]]] = {}
        self.delivered = 0

    @property
    def reliable(self) -> bool:
        """Whether every announcement of any process reaches this one."""
        return self.cross_process and self.listening

    @contextmanager
    def subscribe(self, topic: str) -> Iterator[Waiter]:
        waiter = Waiter(self)
        self._waiters.setdefault(topic, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(topic)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[topic]

    def on(self, topic: str, callback: Callable[[], None]) -> None:
        """Call `callback` (synchronously, cheap) on every delivery of `topic`, and whenever
        anything may have been missed."""
        self._callbacks.setdefault(topic, []).append(callback)

    def deliver(self, topic: str) -> None:
        for waiter in self._waiters.get(topic, ()):
            waiter.wake()
        for callback in self._callbacks.get(topic, ()):
            callback()
        self.delivered += 1

    def deliver_all(self) -> None:
        """Wake every waiter (the listener reconnected: anything may have been missed)."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()
        for callbacks in self._callbacks.values():
            for callback in callbacks:
                callback()

    def set_listening(self, listening: bool) -> None:
        self.listening = listening
        # Connected: re-read what may have been missed. Disconnected: switch to the safety poll now.
        self.deliver_all()

    @property
    def subscribers(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())
