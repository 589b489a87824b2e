"""Each limit of a run ends it with its own stop reason, and the outcome keeps the usage so far."""

from __future__ import annotations

import time

import pytest

from agentkeep.runs.executor import execute
from agentkeep.runs.offline_model import CHARS_PER_TOKEN, LOOP_MARKER
from agentkeep.runs.states import EventKind, RunStatus, StopReason
from tests.runs.helpers import ListSink, run_request, summed_usage
from tests.tools.local_server import LocalServer

E = EventKind


@pytest.mark.parametrize("max_steps", [1, 3])
async def test_max_steps_stops_a_model_that_keeps_calling_tools(max_steps: int) -> None:
    sink = ListSink()
    outcome = await execute(
        run_request(f"{LOOP_MARKER} what is 2+2", tools={"calculator": {}}, max_steps=max_steps), sink
    )

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MAX_STEPS)
    assert outcome.usage.requests == max_steps
    assert [r["step"] for r in sink.of(E.MODEL_REQUEST)] == list(range(1, max_steps + 1))
    assert len(sink.of(E.TOOL_RESULT)) == max_steps
    assert E.OUTPUT not in sink.kinds()
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == summed_usage(sink)


async def test_without_the_loop_marker_the_same_agent_answers_after_one_tool_round() -> None:
    outcome = await execute(run_request("what is 2+2", tools={"calculator": {}}, max_steps=3), ListSink())
    assert outcome.status == RunStatus.COMPLETED
    assert outcome.usage.requests == 2


async def test_an_answer_cut_off_at_the_output_limit_stops_with_max_tokens() -> None:
    sink = ListSink()
    outcome = await execute(
        run_request("please repeat this rather long sentence back to me", max_output_tokens=3), sink
    )

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MAX_TOKENS)
    [response] = sink.of(E.MODEL_RESPONSE)
    assert len(response["text"]) <= 3 * CHARS_PER_TOKEN
    assert response["usage"]["output_tokens"] <= 3
    assert E.OUTPUT not in sink.kinds()
    assert outcome.output is None


async def test_output_tokens_over_the_whole_run_are_limited_too() -> None:
    # Each response fits the limit on its own; together they exceed it.
    unlimited = ListSink()
    await execute(run_request("what is 2+2", tools={"calculator": {}}), unlimited)
    per_response = [r["usage"]["output_tokens"] for r in unlimited.of(E.MODEL_RESPONSE)]
    limit = sum(per_response) - 1
    assert max(per_response) <= limit

    sink = ListSink()
    outcome = await execute(
        run_request("what is 2+2", tools={"calculator": {}}, max_output_tokens=limit), sink
    )

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.MAX_TOKENS)
    assert outcome.usage.output_tokens == sum(per_response) > limit
    # The response that went over the limit is still recorded.
    assert len(sink.of(E.MODEL_RESPONSE)) == 2
    assert E.OUTPUT not in sink.kinds()


async def test_token_budget_exhausted_during_the_run_stops_with_budget_exceeded() -> None:
    free = await execute(run_request("what is 2+2", tools={"calculator": {}}), ListSink())
    budget = free.usage.total_tokens - 1

    sink = ListSink()
    outcome = await execute(run_request("what is 2+2", tools={"calculator": {}}, token_budget=budget), sink)

    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.BUDGET_EXCEEDED)
    assert outcome.usage.total_tokens > budget
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == summed_usage(sink)


async def test_a_budget_that_covers_the_run_lets_it_complete() -> None:
    free = await execute(run_request("what is 2+2", tools={"calculator": {}}), ListSink())
    outcome = await execute(
        run_request("what is 2+2", tools={"calculator": {}}, token_budget=free.usage.total_tokens), ListSink()
    )
    assert outcome.status == RunStatus.COMPLETED


@pytest.mark.parametrize("budget", [0, -5])
async def test_no_budget_left_means_no_model_request(budget: int) -> None:
    sink = ListSink()
    outcome = await execute(run_request("hi", token_budget=budget), sink)
    assert (outcome.status, outcome.stop_reason) == (RunStatus.FAILED, StopReason.BUDGET_EXCEEDED)
    assert sink.events == []
    assert outcome.usage.requests == 0


async def test_wall_time_limit_times_out_the_run_even_inside_a_tool(server: LocalServer) -> None:
    sink = ListSink()
    request = run_request(
        f"fetch {server.url('/slow')}",
        tools={"http_get": {"allowed_hosts": ["127.0.0.1"], "timeout_seconds": 30}},
        timeout_seconds=0.5,
    )
    started = time.monotonic()
    outcome = await execute(request, sink)

    assert time.monotonic() - started < 5
    assert (outcome.status, outcome.stop_reason) == (RunStatus.TIMED_OUT, StopReason.TIMEOUT)
    assert outcome.error is not None
    assert "0.5 seconds" in outcome.error
    assert outcome.usage.requests == 1
    assert outcome.usage.output_tokens > 0
    assert sink.kinds()[-1] == E.TOOL_CALL
