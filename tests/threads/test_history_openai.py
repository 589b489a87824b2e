"""Thread turns against a real OpenAI-compatible server on loopback: what each model request
carries, read from the request bodies the server received.

The agents are `openai:local-model` agents of a deployment whose OPENAI_BASE_URL is the
scripted server; turns execute in the test's app on both backends. Expectations are written
in the chat completions wire format (tests/threads/chat_wire.py), and token counts by hand
from the documented estimate: one token per started group of four characters of each text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from agentkeep.config import Settings
from tests.agents.helpers import create_agent, owner
from tests.support.chat_server import (
    ChatServer,
    Reply,
    SeenChatRequest,
    running_chat_server,
    text_reply,
    tool_call_reply,
)
from tests.threads.chat_wire import (
    Message,
    assert_calls_paired,
    estimate,
    of_kind,
    roles,
    run_events,
    text,
    user_texts,
)
from tests.threads.helpers import create_thread, finished, messages, say, thread_settings

SYSTEM = "You are a calculator."  # 21 characters: 6 tokens
LIMIT = 256  # the smallest max_context_tokens an agent may have


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    with running_chat_server() as server:
        yield server


@pytest.fixture
def settings(
    backend: str, database_url: str, make_settings: Callable[..., Settings], chat: ChatServer
) -> Settings:
    # `openai:` models talk to `chat`.
    return thread_settings(
        make_settings, backend, database_url, openai_base_url=chat.base_url, openai_api_key="local-test-key"
    )


class Conversation:
    """One user's thread with an `openai:` agent; each turn scripts the server's answers and
    returns the requests the server received during it."""

    def __init__(self, http: httpx.AsyncClient, chat: ChatServer) -> None:
        self.http, self.chat = http, chat
        self.headers: dict[str, str] = {}
        self.thread_id = ""

    async def start(self, **agent: Any) -> None:
        self.headers = await owner(self.http)
        created = await create_agent(
            self.http, self.headers, model="openai:local-model", tools=[{"name": "calculator"}], **agent
        )
        self.thread_id = (await create_thread(self.http, self.headers, created["id"]))["id"]

    async def turn(self, text: str, answers: list[Reply]) -> tuple[dict[str, Any], list[SeenChatRequest]]:
        seen = len(self.chat.requests)
        self.chat.script += answers
        run = await say(self.http, self.headers, self.thread_id, text)
        done = await finished(self.http, self.headers, run["id"])
        assert done["status"] == "completed", done
        assert self.chat.script == []
        return done, self.chat.requests[seen:]


def calculator_call(call_id: str, expression: str) -> Reply:
    return tool_call_reply([(call_id, "calculator", json.dumps({"expression": expression}))])


def sent(request: SeenChatRequest) -> list[Message]:
    found: list[Message] = request.body["messages"]
    return found


Wire = tuple[str, str, list[tuple[str, str, str, Any]], str | None]


def wire(message: Message) -> Wire:
    """A message as the chat format defines it: role, text, tool calls (id, type, function
    name, parsed arguments) and the call a tool message answers."""
    calls = [
        (call["id"], call["type"], call["function"]["name"], json.loads(call["function"]["arguments"]))
        for call in message.get("tool_calls") or []
    ]
    return message["role"], text(message), calls, message.get("tool_call_id")


@pytest.mark.parametrize("system_prompt", [SYSTEM, ""], ids=["system-prompt", "no-system-prompt"])
async def test_the_second_turn_sends_the_first_turn_in_order(
    client: httpx.AsyncClient, chat: ChatServer, system_prompt: str
) -> None:
    talk = Conversation(client, chat)
    await talk.start(system_prompt=system_prompt)
    first, first_requests = await talk.turn(
        "What is 6*7?", [calculator_call("call_abc123", "6*7"), text_reply("It is 42.")]
    )
    assert first["output"] == "It is 42."
    second, [request] = await talk.turn("And plus one?", [text_reply("43.")])
    assert second["output"] == "43."

    system: list[Wire] = [("system", system_prompt, [], None)] if system_prompt else []
    assert [wire(message) for message in sent(request)] == [
        *system,
        ("user", "What is 6*7?", [], None),
        ("assistant", "", [("call_abc123", "function", "calculator", {"expression": "6*7"})], None),
        ("tool", "42", [], "call_abc123"),
        ("assistant", "It is 42.", [], None),
        ("user", "And plus one?", [], None),
    ]
    # Byte for byte what the model saw later in the first turn, as in one long conversation.
    assert sent(request)[:-2] == sent(first_requests[-1])
    assert sent(request)[-2] == {"role": "assistant", "content": "It is 42."}
    assert sent(request)[-1] == {"role": "user", "content": "And plus one?"}


def long_input(label: str, chars: int) -> str:
    """`chars` characters, starting with `label` so each turn's input is its own."""
    filler = f"{label}: " + " ".join(["several words to make the message long"] * (chars // 8))
    return filler[:chars]


# Four turns of 400-character inputs (100 tokens each), three with a calculator call:
# `calculator` + `{"expression":"1+1"}` (the arguments as sent back) is 30 characters, 8
# tokens; its result "2" 1 token; the answer "Noted." 2 tokens. A turn with a call weighs
# 111 tokens, one without 102.
TURNS = [
    (long_input("first", 400), [calculator_call("call_t1", "1+1"), text_reply("Noted.")]),
    (long_input("second", 400), [text_reply("Noted.")]),
    (long_input("third", 400), [calculator_call("call_t3", "2+2"), text_reply("Noted.")]),
    (long_input("fourth", 400), [calculator_call("call_t4", "3+3"), text_reply("Noted.")]),
]


async def test_history_is_trimmed_by_whole_turns_from_the_oldest(
    client: httpx.AsyncClient, chat: ChatServer
) -> None:
    talk = Conversation(client, chat)
    await talk.start(system_prompt=SYSTEM, limits={"max_context_tokens": LIMIT})
    inputs = [prompt for prompt, _ in TURNS]
    assert {len(prompt) for prompt in inputs} == {400}
    runs, requests_of = [], []
    for number, (prompt, answers) in enumerate(TURNS, start=1):
        run, requests = await talk.turn(prompt, answers)
        runs.append(run)
        requests_of.append(requests)
        for request in requests:
            received = sent(request)
            # Every turn alone fits, so every request fits; the system message comes first,
            # no tool call travels without its result, and what was dropped is the oldest.
            assert estimate(received) <= LIMIT, (number, received)
            assert received[0] == {"role": "system", "content": SYSTEM}
            assert_calls_paired(received)
            kept = user_texts(received)
            assert kept == inputs[number - len(kept) : number], (number, kept)

    # Turn 3: 6 + 111 + 102 + 100 = 319 > 256, so the first turn goes (6 + 102 + 100 = 208).
    assert user_texts(sent(requests_of[2][0])) == inputs[1:3]
    # Turn 4: 6 + 111 + 102 + 111 + 100 = 430; without turn 1, 319; without turns 1 and 2,
    # 6 + 111 + 100 = 217: turns 3 and 4 are sent, turn 3 with its call and result.
    first, after_tool = requests_of[3]
    assert [wire(message) for message in sent(first)] == [
        ("system", SYSTEM, [], None),
        ("user", inputs[2], [], None),
        ("assistant", "", [("call_t3", "function", "calculator", {"expression": "2+2"})], None),
        ("tool", "4", [], "call_t3"),
        ("assistant", "Noted.", [], None),
        ("user", inputs[3], [], None),
    ]
    assert estimate(sent(first)) == 217
    # The same turn's next request adds its own call (8) and result "6" (1): 226.
    assert roles(sent(after_tool))[-2:] == ["assistant", "tool"]
    assert user_texts(sent(after_tool)) == inputs[2:4]
    assert estimate(sent(after_tool)) == 226

    events = of_kind(await run_events(client, talk.headers, runs[3]["id"]), "context_trimmed")
    assert events[0] == {
        "dropped_turns": 2,
        "dropped_messages": 6,  # turn 1: prompt, call, result, answer; turn 2: prompt, answer
        "estimated_tokens_before": 430,
        "estimated_tokens": 217,
        "max_context_tokens": LIMIT,
        "fits": True,
    }
    assert all(event["fits"] and event["dropped_turns"] >= 1 for event in events)
    assert of_kind(await run_events(client, talk.headers, runs[0]["id"]), "context_trimmed") == []
    assert of_kind(await run_events(client, talk.headers, runs[1]["id"]), "context_trimmed") == []
    assert of_kind(await run_events(client, talk.headers, runs[2]["id"]), "context_trimmed")[0] == {
        "dropped_turns": 1,
        "dropped_messages": 4,
        "estimated_tokens_before": 319,
        "estimated_tokens": 208,
        "max_context_tokens": LIMIT,
        "fits": True,
    }

    # Trimming shapes the requests only: the thread keeps every message of every turn.
    listed = await messages(client, talk.headers, talk.thread_id)
    with_call = ["user", "assistant", "tool", "assistant"]
    assert [m["role"] for m in listed] == [*with_call, "user", "assistant", *with_call, *with_call]
    assert [m["content"] for m in listed if m["role"] == "user"] == inputs
    assert [m["seq"] for m in listed] == list(range(1, 15))
    assert [call["id"] for m in listed for call in m["tool_calls"]] == ["call_t1", "call_t3", "call_t4"]


async def test_a_turn_larger_than_the_limit_is_sent_whole_and_said_not_to_fit(
    client: httpx.AsyncClient, chat: ChatServer
) -> None:
    talk = Conversation(client, chat)
    await talk.start(system_prompt=SYSTEM, limits={"max_context_tokens": LIMIT})
    await talk.turn("Hello.", [text_reply("Hi.")])  # 2 + 1 tokens
    huge = long_input("huge", 1200)  # 300 tokens: more than the limit on its own
    run, [first, after_tool] = await talk.turn(huge, [calculator_call("call_big", "5*5"), text_reply("25.")])

    assert [wire(message) for message in sent(first)] == [
        ("system", SYSTEM, [], None),
        ("user", huge, [], None),
    ]
    assert estimate(sent(first)) == 306
    assert [wire(message) for message in sent(after_tool)] == [
        ("system", SYSTEM, [], None),
        ("user", huge, [], None),
        ("assistant", "", [("call_big", "function", "calculator", {"expression": "5*5"})], None),
        ("tool", "25", [], "call_big"),
    ]
    events = of_kind(await run_events(client, talk.headers, run["id"]), "context_trimmed")
    assert events[0] == {
        "dropped_turns": 1,
        "dropped_messages": 2,
        "estimated_tokens_before": 309,
        "estimated_tokens": 306,
        "max_context_tokens": LIMIT,
        "fits": False,
    }
    listed = await messages(client, talk.headers, talk.thread_id)
    assert [(m["role"], m["content"]) for m in listed] == [
        ("user", "Hello."),
        ("assistant", "Hi."),
        ("user", huge),
        ("assistant", None),
        ("tool", None),
        ("assistant", "25."),
    ]
