"""The offline `test` model's argument extraction and token counting."""

from __future__ import annotations

import pytest

from agentkeep.runs.offline_model import count_tokens, find_expression, find_url, planned_calls
from agentkeep.tools.calculator import evaluate


@pytest.mark.parametrize(
    ("text", "expression", "value"),
    [
        ("What is (2+3)*4?", "(2+3)*4", 20),
        ("compute 10 / 4 please", "10 / 4", 2.5),
        ("In 2024 I had 3 apples and ate 1 - how many? 3-1", "3-1", 2),
        ("what is 2 ** 10", "2 ** 10", 1024),
        ("(1.5 + 2.5) * 2", "(1.5 + 2.5) * 2", 8.0),
    ],
)
def test_finds_the_arithmetic_expression_the_calculator_can_evaluate(
    text: str, expression: str, value: float
) -> None:
    found = find_expression(text)
    assert found == expression
    assert evaluate(found) == value


@pytest.mark.parametrize("text", ["hello", "the year 2024", "call 555"])
def test_no_expression_without_an_operator(text: str) -> None:
    assert find_expression(text) is None


def test_finds_the_first_url_without_trailing_punctuation() -> None:
    assert find_url("see https://example.com/a?b=1, then http://x.test/") == "https://example.com/a?b=1"
    assert find_url("(at http://example.org/page).") == "http://example.org/page"
    assert find_url("no link here") is None


def test_plans_calls_only_for_tools_it_has_arguments_for() -> None:
    tools = ["calculator", "current_time", "http_get"]
    assert planned_calls("what time is it", tools) == [("current_time", {})]
    assert planned_calls("2+2 at https://example.com", tools) == [
        ("calculator", {"expression": "2+2"}),
        ("current_time", {}),
        ("http_get", {"url": "https://example.com"}),
    ]
    assert planned_calls("hello", ["calculator"]) == []


def test_token_count_is_one_per_started_group_of_four_characters() -> None:
    assert [count_tokens(t) for t in ["", "a", "abcd", "abcde"]] == [0, 1, 1, 2]
