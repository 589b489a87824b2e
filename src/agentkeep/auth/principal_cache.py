"""Who a credential belongs to, remembered for at most a second per process.

An authenticated request needs the caller's session (or API key), user and role: one
query. Under load the same callers come back many times a second, so each process keeps
what it read for `PRINCIPAL_CACHE_SECONDS` (1 s) and answers from memory meanwhile. Every
check is still made on every request against the remembered rows (revoked, expired, the
session's organization, the key's address ranges); only the query is saved.

Freshness: any change that can withdraw access is announced to every process at commit
(`REVOCATIONS`, auth/revocations.py), and the cache drops everything it holds at once. A
missed announcement (a listener reconnecting) costs at most the one second an entry lives.
Only successes are remembered; an unknown credential always asks the database. What is
remembered are copies of the rows (`snapshot`): transient objects no session owns, so no
request's rollback or refresh can expire them under another request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm.attributes import set_committed_value

from agentkeep.notify.hub import Hub
from agentkeep.notify.topics import REVOCATIONS

PRINCIPAL_CACHE_SECONDS = 1.0
MAX_ENTRIES = 10_000

T = TypeVar("T")
M = TypeVar("M")


def snapshot(row: M) -> M:
    """A copy of an ORM object's column values in a new transient object of its class."""
    model: Any = type(row)
    copy = model()
    for attribute in inspect(model).column_attrs:
        set_committed_value(copy, attribute.key, getattr(row, attribute.key))
    copied: M = copy
    return copied


class PrincipalCache(Generic[T]):
    def __init__(self, ttl_seconds: float = PRINCIPAL_CACHE_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def watch(self, hub: Hub) -> None:
        """Forget everything whenever the hub delivers a revocation."""
        hub.on(REVOCATIONS, self.clear)

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: str, value: T) -> None:
        self._entries[key] = (time.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
