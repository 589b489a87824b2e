"""Turns of a thread with the offline model: history carried from turn to turn, the
conversation listed as users see it, tool calls and results kept with their turn."""

from __future__ import annotations

import httpx

from tests.agents.helpers import create_agent, owner
from tests.threads.helpers import create_thread, finished, messages, say


async def test_the_third_answer_depends_on_the_first_turn(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers)
    thread = await create_thread(client, headers, agent["id"])
    outputs = []
    for text in ["My name is Ada.", "I like tea.", "#recall what did I say?"]:
        run = await say(client, headers, thread["id"], text)
        assert run["thread_id"] == thread["id"]
        done = await finished(client, headers, run["id"])
        assert done["status"] == "completed", done
        outputs.append(done["output"])
    assert outputs[0] == "echo: My name is Ada."
    assert outputs[2] == "recall: 1. My name is Ada. | 2. I like tea."
    listed = await messages(client, headers, thread["id"])
    assert [(m["role"], m["content"]) for m in listed] == [
        ("user", "My name is Ada."),
        ("assistant", "echo: My name is Ada."),
        ("user", "I like tea."),
        ("assistant", "echo: I like tea."),
        ("user", "#recall what did I say?"),
        ("assistant", outputs[2]),
    ]
    assert [m["seq"] for m in listed] == [1, 2, 3, 4, 5, 6]


async def test_tool_calls_and_results_are_part_of_the_conversation(client: httpx.AsyncClient) -> None:
    headers = await owner(client)
    agent = await create_agent(client, headers, tools=[{"name": "calculator"}])
    thread = await create_thread(client, headers, agent["id"])
    run = await say(client, headers, thread["id"], "what is 6 * 7")
    assert (await finished(client, headers, run["id"]))["output"] == "calculator: 42"
    listed = await messages(client, headers, thread["id"])
    assert [m["role"] for m in listed] == ["user", "assistant", "tool", "assistant"]
    call = listed[1]["tool_calls"][0]
    assert (call["name"], call["args"]) == ("calculator", {"expression": "6 * 7"})
    result = listed[2]["tool_results"][0]
    assert result["tool_call_id"] == call["id"]
    assert result["error"] is False
    # docs/tools.md: the calculator returns its result as text (repr); shown as returned.
    assert (result["name"], result["content"]) == ("calculator", "42")
    assert {m["run_id"] for m in listed} == {run["id"]}
