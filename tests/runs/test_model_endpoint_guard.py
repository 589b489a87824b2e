"""Model endpoints pass the network guard when the model is called, after DNS resolution.

A tiny DNS server on loopback gives names the addresses an attacker would choose
(169.254.169.254, 127.0.0.1); the run resolves them through it, as it resolves names through
the system resolver in production. What the guard must refuse never reaches the model server.
"""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr

from agentkeep.runs.contract import ModelEndpoint, RunOutcome
from agentkeep.runs.executor import execute
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.tools.context import ToolContext
from agentkeep.tools.netguard import EgressAllowlist
from tests.runs.helpers import ListSink, run_request
from tests.support.chat_server import ChatServer, Redirect, Step, running_chat_server, text_reply
from tests.support.dns_server import DnsServer, running_dns_server

MODEL_HOST = "llm.internal.test"
METADATA_ALIAS = "metadata-alias.attacker.test"
ANSWERS = {MODEL_HOST: ["127.0.0.1"], METADATA_ALIAS: ["169.254.169.254"]}


async def run_against(
    host: str, allowlist: list[str], script: list[Step] | None = None
) -> tuple[RunOutcome, ListSink, ChatServer, DnsServer]:
    sink = ListSink()
    async with running_dns_server(ANSWERS) as (dns_server, resolve):
        with running_chat_server(script or [text_reply("hello")]) as chat:
            endpoint = ModelEndpoint(
                base_url=f"http://{host}:{chat.port}/v1",
                api_key=SecretStr("sk-" + secrets.token_hex(16)),
                allowlist=EgressAllowlist.parse(allowlist),
            )
            request = run_request("Say hello.", model="openai:local-model", endpoint=endpoint)
            outcome = await execute(request, sink, tool_context=ToolContext(resolve=resolve))
    return outcome, sink, chat, dns_server


def assert_refused(outcome: RunOutcome, sink: ListSink, reason: str) -> None:
    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error is not None
    assert outcome.error.startswith("the model endpoint was refused: ")
    assert reason in outcome.error
    assert sink.of(EventKind.MODEL_RESPONSE) == []


@pytest.mark.parametrize(
    "allowlist",
    [[], ["169.254.0.0/16", METADATA_ALIAS], ["0.0.0.0/0"]],
    ids=["no-allowlist", "allowlisted-by-name-and-network", "everything-allowlisted"],
)
async def test_a_name_resolving_to_the_metadata_address_is_refused_even_when_allowlisted(
    allowlist: list[str],
) -> None:
    outcome, sink, chat, dns_server = await run_against(METADATA_ALIAS, allowlist)

    assert_refused(outcome, sink, f"{METADATA_ALIAS} resolves to 169.254.169.254, a cloud metadata address")
    assert METADATA_ALIAS in dns_server.asked  # decided on the resolved address, not the name
    assert chat.requests == []


async def test_a_name_resolving_to_loopback_is_refused_without_an_allowlist() -> None:
    outcome, sink, chat, _ = await run_against(MODEL_HOST, [])

    assert_refused(outcome, sink, f"{MODEL_HOST} resolves to 127.0.0.1, a loopback address")
    assert chat.requests == []


@pytest.mark.parametrize("allowlist", [["127.0.0.0/8"], [MODEL_HOST]], ids=["network", "host"])
async def test_an_allowlisted_self_hosted_model_server_is_reached_by_its_name(allowlist: list[str]) -> None:
    outcome, _, chat, _ = await run_against(MODEL_HOST, allowlist)

    assert (outcome.status, outcome.output) == (RunStatus.COMPLETED, "hello")
    # Sent to the checked address, still addressed to the name.
    [seen] = chat.requests
    assert seen.host == f"{MODEL_HOST}:{chat.port}"


async def test_a_redirect_to_the_metadata_address_is_refused_before_the_second_hop() -> None:
    with running_chat_server() as probe:
        port = probe.port  # a port nothing listens on once the probe has stopped
    script: list[Step] = [Redirect(f"http://{METADATA_ALIAS}:{port}/latest/meta-data/")]
    outcome, sink, chat, dns_server = await run_against(MODEL_HOST, [MODEL_HOST], script)

    assert_refused(outcome, sink, f"{METADATA_ALIAS} resolves to 169.254.169.254, a cloud metadata address")
    assert len(chat.requests) == 1  # the allowlisted first hop, which answered with the redirect
    assert METADATA_ALIAS in dns_server.asked
