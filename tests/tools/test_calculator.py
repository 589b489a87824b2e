"""The calculator: exact integer arithmetic, float maths, and refusal of everything else."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkeep.tools import ToolContext, ToolError, get_tool
from agentkeep.tools.calculator import MAX_EXPRESSION_LENGTH, evaluate

Expression = tuple[str, int]


def _leaf(value: int) -> Expression:
    return (f"({value})" if value < 0 else str(value)), value


def _combine(children: st.SearchStrategy[Expression]) -> st.SearchStrategy[Expression]:
    def build(left: Expression, op: str, right: Expression) -> Expression:
        a, b = left[1], right[1]
        value = a + b if op == "+" else a - b if op == "-" else a * b
        return f"({left[0]} {op} {right[0]})", value

    return st.builds(build, children, st.sampled_from("+-*"), children)


integer_expressions = st.recursive(st.integers(-1000, 1000).map(_leaf), _combine, max_leaves=12)


@settings(deadline=None)  # no timing assertions: the machine may be loaded
@given(integer_expressions)
def test_integer_arithmetic_matches_python(expression: Expression) -> None:
    text, expected = expression
    assert evaluate(text) == expected


@settings(deadline=None)
@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6).filter(lambda n: n != 0))
def test_division_floor_division_and_modulo_match_python(a: int, b: int) -> None:
    assert evaluate(f"{a} / ({b})") == a / b
    assert evaluate(f"{a} // ({b})") == a // b
    assert evaluate(f"{a} % ({b})") == a % b


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-2 ** 2", -4),
        ("+-+3", -3),
        ("2 ** 64", 2**64),
        ("2 ** -2", 0.25),
        ("10 ** 300", 10**300),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("sqrt(16)", 4.0),
        ("abs(-3)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("min(3, 1, 2) + max(4, 6)", 7),
        ("min(5) + max(-1.5)", 3.5),
        ("floor(2.7) + ceil(2.1)", 5),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("exp(0)", 1.0),
        ("sin(0) + cos(0) + tan(0)", 1.0),
        ("2 * pi", 2 * math.pi),
        ("1.5e3 + .5", 1500.5),
        ("  1 +\n 1 ", 2),
    ],
)
def test_known_results(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)
    assert type(evaluate(expression)) is type(expected)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("x + 1", "name 'x'"),
        ("__import__('os').system('true')", "not allowed"),
        ("__import__", "name '__import__'"),
        ("(1).__class__", "Attribute"),
        ("pi.real", "Attribute"),
        ("open('/etc/passwd')", "call of 'open'"),
        ("eval('1')", "call of 'eval'"),
        ("(lambda: 1)()", "call of an expression"),
        ("lambda: 1", "Lambda"),
        ("[x for x in (1, 2)]", "ListComp"),
        ("sum(i for i in (1, 2))", "call of 'sum'"),
        ("{1: 2}", "Dict"),
        ("'a' * 3", "str literal"),
        ("True + 1", "bool literal"),
        ("1j * 1j", "complex literal"),
        ("1 if 1 else 2", "IfExp"),
        ("1 < 2", "Compare"),
        ("1 << 2", "BinOp"),
        ("~1", "UnaryOp"),
        ("sqrt(x=4)", "positional arguments"),
        ("max()", "positional arguments"),
        ("a := 1", "not a valid"),
        ("import os", "not a valid"),
        ("1 +", "not a valid"),
        ("", "not a valid"),
    ],
)
def test_everything_but_arithmetic_is_refused(expression: str, error: str) -> None:
    with pytest.raises(ToolError, match=error):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("9 ** 9 ** 9", "overflow"),
        ("10 ** 301", "overflow"),
        ("2 ** 10 ** 100", "overflow"),
        ("(10 ** 200) * (10 ** 200)", "overflow"),
        ("1.5 ** 5000", "overflow"),
        ("1e308 * 10", "overflow"),
        ("exp(1000)", "overflow"),
        ("9" * 400, "overflow"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "math error"),
        ("log(0)", "math error"),
        ("(-8) ** (1 / 3)", "math error"),
        ("round(1, 1000)", "digits"),
        ("round(1, 0.5)", "digits"),
    ],
)
def test_bombs_and_math_errors_are_tool_errors(expression: str, error: str) -> None:
    with pytest.raises(ToolError, match=error):
        evaluate(expression)


def test_over_long_input_is_refused_before_parsing() -> None:
    with pytest.raises(ToolError, match="too long"):
        evaluate("1+" * MAX_EXPRESSION_LENGTH + "1")


def test_too_many_nodes_are_refused() -> None:
    with pytest.raises(ToolError, match="too complex"):
        evaluate("+".join(["1"] * 150))


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(ToolError, match="nested too deeply"):
        evaluate("-(" * 60 + "1" + ")" * 60)
    with pytest.raises(ToolError, match="not a valid"):
        evaluate("(" * 240 + "1" + ")" * 240)  # beyond the parser's own nesting limit


async def test_calculator_through_the_registry_returns_text() -> None:
    spec = get_tool("calculator")
    settings = spec.parse_settings(None)
    assert await spec.call({"expression": "0.1 + 0.2"}, settings, ToolContext()) == "0.30000000000000004"
    assert await spec.call({"expression": "2 ** 70"}, settings, ToolContext()) == str(2**70)
    with pytest.raises(ToolError, match="invalid arguments"):
        await spec.call({"expression": "x" * (MAX_EXPRESSION_LENGTH + 1)}, settings, ToolContext())
