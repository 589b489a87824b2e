"""`calculator`: arithmetic on a parsed syntax tree, never eval.

Numbers follow Python's rules: integers stay exact (`2**64` is exact), `/` and any float
operand give an IEEE 754 double, as in Python. Every input is bounded before work is done:
the expression length, the number of syntax nodes, the nesting depth, the size of an integer
power (estimated before it is computed) and the magnitude of every intermediate result, so
`9**9**9` is refused at once instead of eating the CPU.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentkeep.tools.context import ToolContext
from agentkeep.tools.errors import ToolError

Number = int | float

MAX_EXPRESSION_LENGTH = 500
MAX_NODES = 200
MAX_DEPTH = 40
MAX_INTEGER = 10**300  # also keeps every integer convertible to a float
MAX_INTEGER_LOG2 = math.log2(MAX_INTEGER) + 1e-9
MAX_FUNCTION_ARGS = 50


class CalculatorSettings(BaseModel):
    """The calculator has no per-agent settings; the model exists so unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class CalculatorArgs(BaseModel):
    """Evaluate an arithmetic expression, e.g. `sqrt(2) * (3 + 4) ** 2`."""

    model_config = ConfigDict(extra="forbid")

    expression: str = Field(
        min_length=1,
        max_length=MAX_EXPRESSION_LENGTH,
        description="Numbers, + - * / // % ** and parentheses, the functions sqrt abs round min "
        "max floor ceil log exp sin cos tan, and the constants pi and e.",
    )


def _round(x: Number, digits: Number = 0) -> Number:
    if not isinstance(digits, int) or abs(digits) > 100:
        raise ToolError("round: the number of digits must be an integer between -100 and 100")
    return round(x, digits) if digits else round(x)


def _min(*values: Number) -> Number:
    return min(values)


def _max(*values: Number) -> Number:
    return max(values)


def _log(x: Number, base: Number = math.e) -> float:
    return math.log(x, base)


def _pow(base: Number, exponent: Number) -> Number:
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        # Refused from its logarithm, before Python would spend time and memory computing it.
        if abs(base) > 1 and exponent * math.log2(abs(base)) > MAX_INTEGER_LOG2:
            raise ToolError("overflow: the result exceeds 1e300")
        return int(base**exponent)
    if base == 0 and exponent < 0:
        raise ZeroDivisionError
    return math.pow(base, exponent)


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "min": _min,
    "max": _max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": _log,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _pow,
}
UNARY: dict[type[ast.unaryop], Callable[[Any], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _checked(value: object) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("overflow: the result is not a finite number")
    if abs(value) > MAX_INTEGER:
        raise ToolError("overflow: the result exceeds 1e300")
    return value


def _apply(function: Callable[..., object], *args: Number) -> Number:
    try:
        return _checked(function(*args))
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("overflow: the result is too large") from None
    except (ValueError, TypeError) as exc:
        raise ToolError(f"math error: {exc}") from None


def _evaluate(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError(f"expression nested too deeply (limit {MAX_DEPTH})")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        return _apply(BINARY[type(node.op)], left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return _apply(UNARY[type(node.op)], _evaluate(node.operand, depth + 1))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        if node.keywords or not 0 < len(node.args) <= MAX_FUNCTION_ARGS:
            raise ToolError(f"{node.func.id}: takes 1 to {MAX_FUNCTION_ARGS} positional arguments")
        args = [_evaluate(arg, depth + 1) for arg in node.args]
        return _apply(FUNCTIONS[node.func.id], *args)
    raise ToolError(f"not allowed in an expression: {_describe(node)}")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"name {node.id!r}"
    if isinstance(node, ast.Call):
        return "call of " + (f"{node.func.id!r}" if isinstance(node.func, ast.Name) else "an expression")
    if isinstance(node, ast.Constant):
        return f"{type(node.value).__name__} literal"
    return type(node).__name__


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression; every failure is a `ToolError`."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolError(f"expression too long (limit {MAX_EXPRESSION_LENGTH} characters)")
    try:
        # Newlines and tabs are spacing to a person; the parser would refuse a bare newline.
        tree = ast.parse(" ".join(expression.split()), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolError("not a valid arithmetic expression") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"expression too complex (limit {MAX_NODES} syntax nodes)")
    return _evaluate(tree.body)


async def run(args: CalculatorArgs, settings: CalculatorSettings, context: ToolContext) -> JsonValue:
    """Evaluate the expression and return the result as text (`repr` of the number)."""
    return repr(evaluate(args.expression))
