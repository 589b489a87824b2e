"""The agent loop with the offline `test` model: events in order, tool answers, failures, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from pydantic import JsonValue

from agentkeep.runs.contract import ModelEndpoint
from agentkeep.runs.executor import execute
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from agentkeep.tools.context import ToolContext
from tests.runs.helpers import ListSink, run_request, summed_usage
from tests.tools.local_server import LocalServer

E = EventKind


async def test_calculator_run_emits_each_step_in_order_and_answers_20() -> None:
    sink = ListSink()
    outcome = await execute(run_request("What is (2+3)*4?", tools={"calculator": {}}), sink)

    assert outcome.status == RunStatus.COMPLETED
    assert outcome.stop_reason == StopReason.END_TURN
    assert outcome.output is not None
    assert "calculator: 20" in outcome.output
    assert sink.kinds() == [
        E.MODEL_REQUEST,
        E.MODEL_RESPONSE,
        E.TOOL_CALL,
        E.TOOL_RESULT,
        E.MODEL_REQUEST,
        E.MODEL_RESPONSE,
        E.OUTPUT,
    ]
    first, second = sink.of(E.MODEL_RESPONSE)
    [call] = first["tool_calls"]
    assert call["tool"] == "calculator"
    assert call["args"] == {"expression": "(2+3)*4"}
    assert "text" not in first
    assert sink.of(E.TOOL_CALL) == [call]
    assert sink.of(E.TOOL_RESULT) == [
        {"tool": "calculator", "tool_call_id": call["tool_call_id"], "result": "20"}
    ]
    assert [r["step"] for r in sink.of(E.MODEL_REQUEST)] == [1, 2]
    assert second["tool_calls"] == []
    assert second["text"] == outcome.output
    assert sink.of(E.OUTPUT) == [{"text": outcome.output}]
    # Usage of the outcome is the sum of what each response reported, and is not zero.
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == summed_usage(sink)
    assert outcome.usage.requests == 2
    assert outcome.usage.input_tokens > 0
    assert outcome.usage.output_tokens > 0


async def test_current_time_uses_the_tool_context_clock_and_zone_setting() -> None:
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    sink = ListSink()
    request = run_request("What time is it?", tools={"current_time": {"default_timezone": "Europe/Paris"}})
    outcome = await execute(request, sink, tool_context=ToolContext(clock=lambda: fixed))

    assert outcome.status == RunStatus.COMPLETED
    [result] = sink.of(E.TOOL_RESULT)
    assert result["result"] == {"timezone": "Europe/Paris", "iso": "2030-01-02T04:04:05+01:00"}
    assert outcome.output is not None
    assert "2030-01-02T04:04:05+01:00" in outcome.output


async def test_without_tools_the_test_model_answers_at_once_and_deterministically() -> None:
    first, second = ListSink(), ListSink()
    request = run_request("Summarise   this\n text", system_prompt="Be brief.")
    one = await execute(request, first)
    two = await execute(request, second)

    assert one.status == RunStatus.COMPLETED
    assert one.output == "echo: Summarise this text"
    assert first.kinds() == [E.MODEL_REQUEST, E.MODEL_RESPONSE, E.OUTPUT]
    assert (one.output, one.usage) == (two.output, two.usage)
    assert one.usage.requests == 1
    assert one.usage.total_tokens > 0


async def test_system_prompt_is_part_of_what_the_model_is_charged_for() -> None:
    short = await execute(run_request("hi"), ListSink())
    longer = await execute(run_request("hi", system_prompt="You are a careful assistant. " * 10), ListSink())
    assert longer.usage.input_tokens > short.usage.input_tokens


async def test_a_tool_error_is_the_tools_answer_and_the_run_goes_on() -> None:
    sink = ListSink()
    outcome = await execute(run_request("What is 1/0?", tools={"calculator": {}}), sink)

    assert outcome.status == RunStatus.COMPLETED
    [result] = sink.of(E.TOOL_RESULT)
    assert result["error"] == "division by zero"
    assert "result" not in result
    assert outcome.output == "calculator: error: division by zero"


async def test_failed_tool_calls_go_back_to_the_model_up_to_the_agents_limit_then_end_the_run() -> None:
    # `#loop`: the test model calls its tools on every request; 1/0 fails each time.
    sink = ListSink()
    request = run_request("What is 1/0? #loop", tools={"calculator": {}}, max_steps=10, max_tool_errors=2)
    outcome = await execute(request, sink)

    assert outcome.status == RunStatus.FAILED
    assert outcome.stop_reason == StopReason.TOOL_ERROR
    assert outcome.error == "the run reached its limit of 2 failed tool calls (calculator failed last)"
    # Two failures were answers the model read; the third ended the run, its error recorded.
    assert [result["error"] for result in sink.of(E.TOOL_RESULT)] == ["division by zero"] * 3
    assert outcome.usage.requests == 3
    assert E.OUTPUT not in sink.kinds()


async def test_a_limit_of_zero_failed_tool_calls_ends_the_run_at_the_first() -> None:
    sink = ListSink()
    outcome = await execute(run_request("What is 1/0?", tools={"calculator": {}}, max_tool_errors=0), sink)

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.TOOL_ERROR)
    assert outcome.usage.requests == 1
    assert len(sink.of(E.TOOL_RESULT)) == 1


async def test_an_unexpected_exception_in_a_tool_fails_the_run_with_tool_error() -> None:
    def broken_clock() -> datetime:
        raise RuntimeError("clock hardware on fire")

    sink = ListSink()
    outcome = await execute(
        run_request("time please", tools={"current_time": {}}),
        sink,
        tool_context=ToolContext(clock=broken_clock),
    )

    assert outcome.status == RunStatus.FAILED
    assert outcome.stop_reason == StopReason.TOOL_ERROR
    assert outcome.error == "tool current_time failed unexpectedly"
    assert "fire" not in str(sink.events)
    [result] = sink.of(E.TOOL_RESULT)
    assert result["error"] == "the tool failed unexpectedly"
    assert E.OUTPUT not in sink.kinds()
    assert outcome.usage.requests == 1
    assert outcome.usage.output_tokens > 0


async def test_several_tools_in_one_response_each_get_a_call_and_a_result() -> None:
    sink = ListSink()
    outcome = await execute(
        run_request("Compute 6*7 and tell the time", tools={"calculator": {}, "current_time": {}}), sink
    )

    assert outcome.status == RunStatus.COMPLETED
    calls = {c["tool_call_id"]: c["tool"] for c in sink.of(E.TOOL_CALL)}
    results = {r["tool_call_id"]: r["tool"] for r in sink.of(E.TOOL_RESULT)}
    assert calls == results
    assert sorted(calls.values()) == ["calculator", "current_time"]
    assert outcome.output is not None
    assert "calculator: 42" in outcome.output


async def test_cancellation_propagates_out_of_execute(server: LocalServer) -> None:
    called = asyncio.Event()

    class SignallingSink(ListSink):
        async def emit(self, kind: EventKind, data: Mapping[str, JsonValue]) -> None:
            await super().emit(kind, data)
            if kind == EventKind.TOOL_CALL:
                called.set()

    sink = SignallingSink()
    request = run_request(
        f"fetch {server.url('/slow')}", tools={"http_get": {"allowed_hosts": ["127.0.0.1"]}}
    )
    task = asyncio.create_task(execute(request, sink))
    await asyncio.wait_for(called.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert E.TOOL_RESULT not in sink.kinds()


async def test_unknown_model_fails_with_model_error_and_no_request() -> None:
    sink = ListSink()
    outcome = await execute(run_request("hi", model="gpt-9000"), sink)
    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error == "unknown model 'gpt-9000'"
    assert sink.events == []
    assert outcome.usage.requests == 0


@pytest.mark.parametrize("endpoint", [None, ModelEndpoint(base_url=None, api_key=None)])
async def test_openai_model_without_an_endpoint_fails_with_a_clear_model_error(
    endpoint: ModelEndpoint | None,
) -> None:
    sink = ListSink()
    outcome = await execute(run_request("hi", model="openai:gpt-4o-mini", endpoint=endpoint), sink)
    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MODEL_ERROR)
    assert outcome.error == "no OpenAI-compatible endpoint configured"
    assert sink.events == []
