"""`openai:<name>` models against a real chat completions server on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from pydantic import SecretStr

from agentkeep.runs.contract import ModelEndpoint, RunOutcome, RunRequest
from agentkeep.runs.executor import execute
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.tools.netguard import EgressAllowlist
from tests.runs.helpers import ListSink, run_request
from tests.support.chat_server import (
    ChatServer,
    Hang,
    Reply,
    Step,
    running_chat_server,
    server_error,
    text_reply,
    tool_call_reply,
)

E = EventKind


def api_key() -> str:
    return "local-" + secrets.token_hex(16)


def openai_request(server: ChatServer, key: str, **kwargs: Any) -> RunRequest:
    # The model server is on loopback, which the network guard refuses unless allowlisted.
    endpoint = ModelEndpoint(
        base_url=server.base_url, api_key=SecretStr(key), allowlist=EgressAllowlist.parse(["127.0.0.1"])
    )
    return run_request("What is (2+3)*4?", model="openai:local-model", endpoint=endpoint, **kwargs)


async def run_script(script: list[Step], key: str, **kwargs: Any) -> tuple[RunOutcome, ListSink, ChatServer]:
    sink = ListSink()
    with running_chat_server(script) as server:
        outcome = await execute(openai_request(server, key, **kwargs), sink)
    return outcome, sink, server


def assert_key_absent(key: str, outcome: RunOutcome, sink: ListSink) -> None:
    assert key not in json.dumps([[kind.value, data] for kind, data in sink.events])
    assert key not in repr(outcome)


async def test_tool_call_round_trip_through_an_openai_compatible_endpoint() -> None:
    key = api_key()
    outcome, sink, server = await run_script(
        [
            tool_call_reply([("call_a", "calculator", '{"expression": "(2+3)*4"}')], 20, 9),
            text_reply("The answer is 20.", 41, 6),
        ],
        key,
        tools={"calculator": {}},
        system_prompt="You are a calculator.",
    )

    assert outcome.status == RunStatus.COMPLETED
    assert outcome.output == "The answer is 20."
    assert (outcome.usage.requests, outcome.usage.input_tokens, outcome.usage.output_tokens) == (2, 61, 15)
    assert sink.kinds() == [
        E.MODEL_REQUEST,
        E.MODEL_RESPONSE,
        E.TOOL_CALL,
        E.TOOL_RESULT,
        E.MODEL_REQUEST,
        E.MODEL_RESPONSE,
        E.OUTPUT,
    ]
    first = sink.of(E.MODEL_RESPONSE)[0]
    assert first["tool_calls"] == [
        {"tool": "calculator", "tool_call_id": "call_a", "args": {"expression": "(2+3)*4"}}
    ]
    assert first["usage"] == {"input_tokens": 20, "output_tokens": 9}
    assert sink.of(E.TOOL_RESULT) == [{"tool": "calculator", "tool_call_id": "call_a", "result": "20"}]

    # What the server was sent: the key as a bearer token, the system prompt, the tool's
    # schema from its argument model, and then the tool's result under its call id.
    first_request, second_request = server.requests
    assert first_request.authorization == f"Bearer {key}"
    assert first_request.body["model"] == "local-model"
    assert first_request.body["messages"][0] == {"role": "system", "content": "You are a calculator."}
    [tool] = first_request.body["tools"]
    assert tool["function"]["name"] == "calculator"
    assert tool["function"]["parameters"]["properties"]["expression"]["type"] == "string"
    tool_message = second_request.body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_a"
    assert "20" in tool_message["content"]
    assert_key_absent(key, outcome, sink)


async def test_invalid_tool_arguments_are_a_tool_error_the_model_can_read() -> None:
    key = api_key()
    outcome, sink, server = await run_script(
        [
            tool_call_reply([("call_b", "calculator", '{"expression": 5, "extra": true}')]),
            text_reply("Sorry."),
        ],
        key,
        tools={"calculator": {}},
    )

    assert outcome.status == RunStatus.COMPLETED
    [result] = sink.of(E.TOOL_RESULT)
    assert result["error"].startswith("invalid arguments for calculator")
    assert "invalid arguments for calculator" in server.requests[1].body["messages"][-1]["content"]


async def test_a_500_then_success_is_retried_by_the_client() -> None:
    key = api_key()
    outcome, _sink, server = await run_script([server_error(), text_reply("fine")], key, max_retries=2)

    assert outcome.status == RunStatus.COMPLETED
    assert outcome.output == "fine"
    assert len(server.requests) == 2
    assert outcome.usage.requests == 1


async def test_persistent_500_fails_with_model_error_after_bounded_retries() -> None:
    key = api_key()
    outcome, sink, server = await run_script([server_error()] * 5, key, max_retries=1)

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error == "the model endpoint answered HTTP 500"
    assert len(server.requests) == 2  # one attempt and max_retries retries
    assert sink.kinds() == [E.MODEL_REQUEST]
    assert_key_absent(key, outcome, sink)


async def test_a_hanging_endpoint_times_out_as_a_model_error() -> None:
    key = api_key()
    started = time.monotonic()
    outcome, sink, server = await run_script(
        [Hang(3)], key, max_retries=0, request_timeout_seconds=0.5, timeout_seconds=20
    )

    assert time.monotonic() - started < 5
    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error == "the model request timed out"
    assert len(server.requests) == 1
    assert_key_absent(key, outcome, sink)


async def test_an_unreachable_endpoint_is_a_model_error() -> None:
    with running_chat_server() as server:
        request = openai_request(server, api_key())
    # The server is gone; its port refuses connections.
    outcome = await execute(request, ListSink())
    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error == "could not connect to the model endpoint"


async def test_a_401_from_the_endpoint_fails_without_echoing_the_key() -> None:
    key = api_key()
    rejected = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
    outcome, sink, _server = await run_script([Reply(rejected, 401)], key)

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error == "the model endpoint answered HTTP 401"
    assert_key_absent(key, outcome, sink)


async def test_usage_reported_by_the_endpoint_drives_the_token_budget() -> None:
    key = api_key()
    outcome, _sink, server = await run_script(
        [
            tool_call_reply([("call_c", "calculator", '{"expression": "1+1"}')], 30, 10),
            text_reply("2", 50, 5),
        ],
        key,
        tools={"calculator": {}},
        token_budget=35,
    )

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.BUDGET_EXCEEDED)
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (30, 10)
    assert len(server.requests) == 1


async def test_a_response_cut_at_max_tokens_by_the_endpoint_stops_with_max_tokens() -> None:
    key = api_key()
    outcome, sink, server = await run_script(
        [text_reply("The answer is", 10, 4, finish_reason="length")], key, max_output_tokens=4
    )

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MAX_TOKENS)
    assert (
        server.requests[0].body.get("max_tokens", server.requests[0].body.get("max_completion_tokens")) == 4
    )
    assert E.OUTPUT not in sink.kinds()


async def test_a_tool_call_cut_off_at_max_tokens_stops_with_max_tokens() -> None:
    key = api_key()
    cut = tool_call_reply([("call_d", "calculator", '{"expression": "(2+')], 10, 4)
    cut.body["choices"][0]["finish_reason"] = "length"
    outcome, sink, server = await run_script([cut], key, tools={"calculator": {}}, max_output_tokens=4)

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MAX_TOKENS)
    assert E.TOOL_CALL not in sink.kinds()
    assert len(server.requests) == 1


async def test_a_model_that_keeps_calling_an_unknown_tool_fails_with_model_error() -> None:
    key = api_key()
    shell = tool_call_reply([("call_e", "shell", '{"cmd": "id"}')])
    outcome, sink, server = await run_script([shell] * 5, key, tools={"calculator": {}}, max_steps=10)

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error is not None
    assert outcome.error.startswith("unexpected model behaviour")
    assert E.TOOL_CALL not in sink.kinds()
    assert 2 <= len(server.requests) < 5
    assert_key_absent(key, outcome, sink)
