"""Every rate limit rule AgentKeep applies, as data: name, limit and what it is keyed by.

The amounts come from the environment (`RATE_LIMIT_*`, validated in config.py); this module
is the one place that says which setting feeds which rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from limits import RateLimitItem

from agentkeep.config import Settings, parse_rate_limit


class RuleName(StrEnum):
    AUTH = "auth"
    LOGIN_FAILURES = "login_failures"
    API = "api"
    RUNS = "runs"


class KeyKind(StrEnum):
    CLIENT_IP = "client_ip"
    ACCOUNT = "account"
    PRINCIPAL = "principal"


@dataclass(frozen=True, slots=True)
class Rule:
    name: RuleName
    notation: str
    key_kind: KeyKind
    description: str
    item: RateLimitItem = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "item", parse_rate_limit(self.notation))

    @property
    def amount(self) -> int:
        return self.item.amount

    @property
    def window_seconds(self) -> int:
        return math.ceil(self.item.get_expiry())


RuleSet = Mapping[RuleName, Rule]


def build_rules(settings: Settings) -> dict[RuleName, Rule]:
    """The rules in force for `settings`."""
    rules = [
        Rule(
            RuleName.AUTH,
            settings.rate_limit_auth,
            KeyKind.CLIENT_IP,
            "register and login attempts per client IP",
        ),
        Rule(
            RuleName.LOGIN_FAILURES,
            settings.rate_limit_login_failures,
            KeyKind.ACCOUNT,
            "failed logins per account, from any IP, before the account is locked",
        ),
        Rule(RuleName.API, settings.rate_limit_api, KeyKind.PRINCIPAL, "API requests per user or API key"),
        Rule(RuleName.RUNS, settings.rate_limit_runs, KeyKind.PRINCIPAL, "run creations per user"),
    ]
    return {rule.name: rule for rule in rules}
