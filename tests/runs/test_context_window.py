"""context_window.trim on hand-built pydantic-ai histories.

Token counts are written by hand from the documented estimate (one token per started group
of four characters of each text: instructions, user prompts, system prompt parts, text
answers, tool calls as tool name + JSON arguments, tool results). A turn starts at a request
carrying a user prompt.
"""

from __future__ import annotations

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from agentkeep.runs.context_window import trim

INSTRUCTIONS = "You are a calculator."  # 21 characters: 6 tokens


def request(*parts: ModelRequestPart) -> ModelRequest:
    return ModelRequest(parts=list(parts))


def response(*parts: ModelResponsePart) -> ModelResponse:
    return ModelResponse(parts=list(parts))


def prompt(chars: int) -> UserPromptPart:
    return UserPromptPart("p" * chars)


def answer(chars: int) -> TextPart:
    return TextPart("a" * chars)


def call(call_id: str) -> ToolCallPart:
    # "calculator" + '{"expression":"1+1"}': 10 + 20 characters, 8 tokens.
    return ToolCallPart("calculator", '{"expression":"1+1"}', call_id)


def returned(call_id: str) -> ToolReturnPart:
    return ToolReturnPart("calculator", "2", call_id)  # 1 token


def plain_turn(prompt_chars: int, answer_chars: int) -> list[ModelMessage]:
    return [request(prompt(prompt_chars)), response(answer(answer_chars))]


def tool_turn(prompt_chars: int, call_id: str, answer_chars: int) -> list[ModelMessage]:
    return [
        request(prompt(prompt_chars)),
        response(call(call_id)),
        request(returned(call_id)),
        response(answer(answer_chars)),
    ]


def call_ids(messages: list[ModelMessage]) -> list[str]:
    return [part.tool_call_id for m in messages for part in m.parts if isinstance(part, ToolCallPart)]


def returned_ids(messages: list[ModelMessage]) -> list[str]:
    return [part.tool_call_id for m in messages for part in m.parts if isinstance(part, ToolReturnPart)]


def test_nothing_is_dropped_while_the_request_fits() -> None:
    # 6 (instructions) + 100 + 8 + 1 + 2 (a turn with a call) + 100 (the current prompt) = 217.
    messages = [*tool_turn(400, "c1", 8), request(prompt(400))]
    kept, dropped = trim(messages, 217, INSTRUCTIONS)
    assert (kept, dropped) == (messages, 0)
    # The instructions count: without them, 211 is enough; with them, 216 is not.
    assert trim(messages, 211, None) == (messages, 0)
    assert trim(messages, 216, INSTRUCTIONS) == (messages[4:], 1)


@pytest.mark.parametrize(
    ("limit", "expected_dropped"),
    [(395, 0), (394, 1), (285, 1), (284, 2), (166, 2), (165, 3), (56, 3), (10, 3)],
)
def test_whole_turns_are_dropped_oldest_first(limit: int, expected_dropped: int) -> None:
    first, second, third = plain_turn(400, 40), tool_turn(400, "c2", 40), plain_turn(400, 40)
    current = request(prompt(200))
    # Turns weigh 110, 100 + 8 + 1 + 10 = 119 and 110; the current prompt 50; with the
    # instructions 395. Without the first turn 285, without the second too 166, then 56.
    messages = [*first, *second, *third, current]
    kept, dropped = trim(messages, limit, INSTRUCTIONS)
    turns = [first, second, third]
    assert dropped == expected_dropped
    assert kept == [message for turn in turns[expected_dropped:] for message in turn] + [current]


def test_a_tool_call_and_its_result_are_kept_or_dropped_together() -> None:
    # The earlier turn calls a tool twice in a row, then two at once: 100 + 8 + 1 + 16 + 2 +
    # 10 = 137. The current turn is between a call and its result's answer: 100 + 8 + 1 = 109.
    earlier: list[ModelMessage] = [
        request(prompt(400)),
        response(call("c1")),
        request(returned("c1")),
        response(call("c2"), call("c3")),
        request(returned("c2"), returned("c3")),
        response(answer(40)),
    ]
    current: list[ModelMessage] = [request(prompt(400)), response(call("c4")), request(returned("c4"))]
    messages = [*earlier, *current]
    # 6 + 137 + 109 = 252. Dropping the earlier prompt alone would fit 151 to 251 tokens, but
    # turns go whole: every limit below 252 keeps the current turn only.
    assert trim(messages, 252, INSTRUCTIONS) == (messages, 0)
    for limit in range(1, 252):
        kept, dropped = trim(messages, limit, INSTRUCTIONS)
        assert (kept, dropped) == (current, 1), limit
        assert call_ids(kept) == returned_ids(kept) == ["c4"]


def test_a_system_prompt_of_a_dropped_turn_moves_to_the_first_kept_request() -> None:
    system = SystemPromptPart("s" * 40)  # 10 tokens
    first_prompt = prompt(400)
    first: list[ModelMessage] = [request(system, first_prompt), response(answer(40))]  # 10 + 100 + 10
    second = plain_turn(400, 40)  # 110
    current = request(prompt(200))  # 50
    messages = [*first, *second, current]
    # 280 without instructions. Dropping the first turn leaves its system prompt: 10 + 110 + 50.
    kept, dropped = trim(messages, 256, None)
    assert dropped == 1
    assert isinstance(kept[0], ModelRequest)
    assert kept[0].parts == [system, *second[0].parts]
    assert kept[1:] == [second[1], current]
    assert messages[0].parts == [system, first_prompt]  # the history given is left as it was


def test_a_moved_system_prompt_is_counted_when_deciding_what_fits() -> None:
    system = SystemPromptPart("s" * 400)  # 100 tokens
    first: list[ModelMessage] = [request(system, prompt(40)), response(answer(40))]  # 100 + 10 + 10
    second = plain_turn(400, 40)  # 110
    current_prompt = prompt(280)  # 70
    messages = [*first, *second, request(current_prompt)]
    # 300 in all. Without the first turn the system prompt stays: 100 + 110 + 70 = 280 > 256,
    # so the second turn goes too: 100 + 70 = 170.
    kept, dropped = trim(messages, 256, None)
    assert dropped == 2
    [only] = kept
    assert isinstance(only, ModelRequest)
    assert only.parts == [system, current_prompt]


def test_the_current_turn_is_never_dropped() -> None:
    huge = request(prompt(1200))  # 300 tokens, more than the limit on its own
    earlier = plain_turn(40, 40)  # 20
    assert trim([*earlier, huge], 256, INSTRUCTIONS) == ([huge], 1)
    assert trim([huge], 256, INSTRUCTIONS) == ([huge], 0)
    # Also in the middle of its tool calls: the current turn is sent whole.
    current: list[ModelMessage] = [huge, response(call("c9")), request(returned("c9"))]
    assert trim([*earlier, *current], 256, INSTRUCTIONS) == (current, 1)
    assert trim(current, 256, INSTRUCTIONS) == (current, 0)
