"""The multitask policies under concurrent turns, on both backends.

Turns execute in the test app (in-process runner, several runs at a time) against a local
OpenAI-compatible model that holds each request until the test opens its gate (or for a
short while): a turn is then visibly running while other requests for the same thread
arrive. The expectations are the policies as documented for `POST /api/threads/{id}/runs`:
reject answers 409 `thread-busy` and writes nothing; enqueue runs the turns one at a time in
turn order; interrupt cancels the unfinished turns, which keep what they said, and the new
turn sees it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from agentkeep.config import Settings
from tests.agents.helpers import create_agent, owner
from tests.support.databases import REDIS_URL
from tests.support.held_chat import (
    HeldChatServer,
    answer_to,
    conversation,
    running_held_chat_server,
    user_texts,
)
from tests.support.timing import SCHEDULING_MARGIN_SECONDS
from tests.threads.helpers import PROBLEM_JSON, THREADS, create_thread, messages, say, settled

MODEL = "openai:local-model"
BUSY = "urn:agentkeep:problem:thread-busy"
# A turn of these tests takes well under a second of work; the bound is for a loaded host.
TURN_SECONDS = 30 + SCHEDULING_MARGIN_SECONDS
# Long enough that turns started together would overlap at the model if they ran at once.
HOLD_SECONDS = 0.3


@pytest.fixture
def model_server() -> Iterator[HeldChatServer]:
    with running_held_chat_server() as server:
        yield server


@pytest.fixture
def settings(
    backend: str, database_url: str, make_settings: Callable[..., Settings], model_server: HeldChatServer
) -> Settings:
    # Turns execute in this process on both backends, several at a time (RUN_CONCURRENCY),
    # so nothing but the turn order keeps two turns of a thread apart.
    return make_settings(
        database_url=database_url,
        redis_url=REDIS_URL if backend == "postgres" else None,
        rate_limit_auth="1000/minute",
        rate_limit_runs="1000/minute",
        rate_limit_api="100000/minute",  # the tests poll the runs of a thread often
        run_execution="inprocess",
        run_concurrency=4,
        openai_base_url=model_server.base_url,
    )


@pytest.fixture
async def client(client: httpx.AsyncClient, model_server: HeldChatServer) -> AsyncIterator[httpx.AsyncClient]:
    """The app's client; whatever the test's end, the model answers before the app stops."""
    yield client
    model_server.gate.set()


async def a_thread(http: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    headers = await owner(http)
    agent = await create_agent(http, headers, model=MODEL)
    return headers, str((await create_thread(http, headers, agent["id"]))["id"])


async def post_turn(
    http: httpx.AsyncClient, headers: dict[str, str], thread_id: str, text: str, **extra: Any
) -> httpx.Response:
    return await http.post(f"{THREADS}/{thread_id}/runs", json={"input": text, **extra}, headers=headers)


async def thread_runs(
    http: httpx.AsyncClient, headers: dict[str, str], thread_id: str, **params: str
) -> list[dict[str, Any]]:
    """Every run of the thread (all pages), in turn order."""
    runs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"thread_id": thread_id, "limit": "100", **params, **({"cursor": cursor} if cursor else {})}
        page = await http.get("/api/runs", params=query, headers=headers)
        assert page.status_code == 200, page.text
        runs += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return sorted(runs, key=lambda run: run["thread_turn"])


# A runner stamps `started_at` just before its claim waits for the database's lock, and the
# previous turn's runner stamps `finished_at` just before its own write: a claim that waited
# for that write can carry a stamp a few milliseconds older. Exclusion itself is proven by
# the model server (at most one request in flight) and by the claims' order.
STAMP_SLACK = timedelta(milliseconds=100)


def assert_one_at_a_time(runs: list[dict[str, Any]]) -> None:
    """The runs that started did so in turn order, each after the one before had finished."""
    started = [run for run in runs if run["started_at"] is not None]
    for earlier, later in itertools.pairwise(started):
        assert earlier["finished_at"] is not None, earlier
        # Parsed, so that the comparison is between instants.
        finished, next_started = (
            datetime.fromisoformat(earlier["finished_at"]),
            datetime.fromisoformat(later["started_at"]),
        )
        assert finished <= next_started + STAMP_SLACK, (earlier, later)


def assert_busy(response: httpx.Response, unfinished: dict[str, str]) -> None:
    """A thread-busy refusal naming one of the `unfinished` turns (id -> status) as it is."""
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["type"] == BUSY
    assert problem["status"] == 409
    assert problem["run_id"] in unfinished, problem
    assert problem["run_status"] == unfinished[problem["run_id"]], problem


async def test_reject_refuses_concurrent_turns_while_one_is_unfinished_and_writes_nothing(
    client: httpx.AsyncClient, model_server: HeldChatServer
) -> None:
    headers, thread_id = await a_thread(client)
    model_server.gate.clear()
    first = await say(client, headers, thread_id, "What is the capital of France?")
    await model_server.wait_for_requests(1, within=TURN_SECONDS)  # the first turn is running

    # The default policy and an explicit reject, many at once.
    refused = await asyncio.gather(
        *(
            post_turn(client, headers, thread_id, f"refused while running {i}", **extra)
            for i, extra in enumerate([{}, {"multitask": "reject"}] * 4)
        )
    )
    for response in refused:
        assert_busy(response, {first["id"]: "running"})

    # A turn queued behind the running one also keeps the thread busy.
    queued = await say(client, headers, thread_id, "And of Italy?", multitask="enqueue")
    assert queued["status"] == "queued"
    refused = await asyncio.gather(
        *(post_turn(client, headers, thread_id, f"refused while queued {i}") for i in range(6))
    )
    for response in refused:
        assert_busy(response, {first["id"]: "running", queued["id"]: "queued"})

    model_server.gate.set()
    for run in (first, queued):
        assert (await settled(client, headers, run["id"], TURN_SECONDS))["status"] == "completed"
    later = await say(client, headers, thread_id, "And of Spain?")
    assert (await settled(client, headers, later["id"], TURN_SECONDS))["status"] == "completed"

    # Nothing of the refused requests: no run, no turn number, no message, no model request.
    runs = await thread_runs(client, headers, thread_id)
    assert [run["id"] for run in runs] == [first["id"], queued["id"], later["id"]]
    assert [run["thread_turn"] for run in runs] == [1, 2, 3]
    said = ["What is the capital of France?", "And of Italy?", "And of Spain?"]
    listed = await messages(client, headers, thread_id)
    assert [(m["role"], m["content"]) for m in listed] == [
        pair for text in said for pair in [("user", text), ("assistant", answer_to(text))]
    ]
    assert [user_texts(seen.body)[-1] for seen in model_server.requests] == said


async def test_enqueued_turns_run_one_at_a_time_in_turn_order(
    client: httpx.AsyncClient, model_server: HeldChatServer
) -> None:
    headers, thread_id = await a_thread(client)
    model_server.hold_seconds = HOLD_SECONDS
    inputs = [f"enqueued message {i}" for i in range(8)]
    responses = await asyncio.gather(
        *(post_turn(client, headers, thread_id, text, multitask="enqueue") for text in inputs)
    )
    assert [response.status_code for response in responses] == [202] * len(inputs), [
        response.text for response in responses
    ]
    accepted = sorted((response.json() for response in responses), key=lambda run: run["thread_turn"])
    assert [run["thread_turn"] for run in accepted] == list(range(1, len(inputs) + 1))
    assert sorted(run["input"] for run in accepted) == sorted(inputs)
    for run in accepted:
        assert (await settled(client, headers, run["id"], TURN_SECONDS))["status"] == "completed"

    runs = await thread_runs(client, headers, thread_id)
    assert [run["id"] for run in runs] == [run["id"] for run in accepted]
    assert_one_at_a_time(runs)
    assert model_server.max_in_flight == 1
    in_turn_order = [run["input"] for run in runs]

    # The model saw the turns in turn order, each with the whole conversation before it.
    assert len(model_server.requests) == len(inputs)
    spoken: list[tuple[str, str]] = []
    for text, seen in zip(in_turn_order, model_server.requests, strict=True):
        assert conversation(seen.body) == [*spoken, ("user", text)]
        spoken += [("user", text), ("assistant", answer_to(text))]

    listed = await messages(client, headers, thread_id)
    assert [(m["role"], m["content"]) for m in listed] == spoken
    assert [m["run_id"] for m in listed] == [run["id"] for run in runs for _ in range(2)]
    assert [m["seq"] for m in listed] == list(range(1, len(spoken) + 1))


async def test_interrupt_cancels_the_running_turn_which_keeps_its_user_message(
    client: httpx.AsyncClient, model_server: HeldChatServer
) -> None:
    headers, thread_id = await a_thread(client)
    model_server.gate.clear()
    first = await say(client, headers, thread_id, "Tell me a very long story.")
    await model_server.wait_for_requests(1, within=TURN_SECONDS)

    second = await say(client, headers, thread_id, "Stop; what did I ask first?", multitask="interrupt")
    assert (second["thread_turn"], second["status"]) == (2, "queued")
    interrupted = await settled(client, headers, first["id"], TURN_SECONDS)
    assert (interrupted["status"], interrupted["stop_reason"]) == ("cancelled", "cancelled")

    model_server.gate.set()
    done = await settled(client, headers, second["id"], TURN_SECONDS)
    assert (done["status"], done["output"]) == ("completed", answer_to("Stop; what did I ask first?"))

    # The new turn's model request carried the interrupted turn's user message before its own.
    assert len(model_server.requests) == 2
    assert conversation(model_server.requests[1].body) == [
        ("user", "Tell me a very long story."),
        ("user", "Stop; what did I ask first?"),
    ]
    listed = await messages(client, headers, thread_id)
    assert [(m["role"], m["content"], m["run_id"]) for m in listed] == [
        ("user", "Tell me a very long story.", first["id"]),
        ("user", "Stop; what did I ask first?", second["id"]),
        ("assistant", answer_to("Stop; what did I ask first?"), second["id"]),
    ]
    assert_one_at_a_time(await thread_runs(client, headers, thread_id))


async def count_running(
    http: httpx.AsyncClient, headers: dict[str, str], thread_id: str, seen: list[int], stop: asyncio.Event
) -> None:
    """Sample how many runs of the thread are running until told to stop."""
    while not stop.is_set():
        seen.append(len(await thread_runs(http, headers, thread_id, status="running")))
        await asyncio.sleep(0.05)


async def test_concurrent_interrupts_leave_at_most_one_turn_running_and_an_ordered_history(
    client: httpx.AsyncClient, model_server: HeldChatServer
) -> None:
    headers, thread_id = await a_thread(client)
    model_server.gate.clear()
    first = await say(client, headers, thread_id, "first words")
    await model_server.wait_for_requests(1, within=TURN_SECONDS)

    samples: list[int] = []
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(count_running(client, headers, thread_id, samples, stop_sampling))
    inputs = [f"interrupting {i}" for i in range(6)]
    responses = await asyncio.gather(
        *(post_turn(client, headers, thread_id, text, multitask="interrupt") for text in inputs)
    )
    assert [response.status_code for response in responses] == [202] * len(inputs), [
        response.text for response in responses
    ]
    accepted = sorted((response.json() for response in responses), key=lambda run: run["thread_turn"])
    assert [run["thread_turn"] for run in accepted] == list(range(2, len(inputs) + 2))
    last = accepted[-1]

    # While the model holds every request, each turn but the last one ends cancelled.
    for run in [first, *accepted[:-1]]:
        assert (await settled(client, headers, run["id"], TURN_SECONDS))["status"] == "cancelled"
    model_server.gate.set()
    done = await settled(client, headers, last["id"], TURN_SECONDS)
    assert (done["status"], done["output"]) == ("completed", answer_to(last["input"]))
    stop_sampling.set()
    await sampler
    assert samples
    assert max(samples) <= 1, samples

    runs = await thread_runs(client, headers, thread_id)
    assert [run["thread_turn"] for run in runs] == list(range(1, len(inputs) + 2))
    assert_one_at_a_time(runs)

    # The history: the user message of each turn that started, once and in turn order (the
    # first, maybe some in between, each cancelled by the next interrupt, and the last), then
    # the last turn's answer. Every turn whose request reached the model is among them.
    listed = await messages(client, headers, thread_id)
    *said, answer = listed
    assert (answer["role"], answer["content"], answer["run_id"]) == (
        "assistant",
        answer_to(last["input"]),
        last["id"],
    )
    by_id = {run["id"]: run for run in runs}
    speakers = [by_id[m["run_id"]] for m in said]
    assert [m["role"] for m in said] == ["user"] * len(said)
    assert [m["content"] for m in said] == [run["input"] for run in speakers]
    turns = [run["thread_turn"] for run in speakers]
    assert turns == sorted(set(turns)), turns  # in order, none twice
    assert (speakers[0]["id"], speakers[-1]["id"]) == (first["id"], last["id"])
    assert all(run["started_at"] is not None for run in speakers)
    asked = [user_texts(seen.body)[-1] for seen in model_server.requests]
    assert len(asked) == len(set(asked)), asked  # no turn asked the model twice
    assert set(asked) <= {m["content"] for m in said}
    # The last turn's model request carried that history.
    assert user_texts(model_server.requests[-1].body) == [m["content"] for m in said]
