"""Exact arithmetic on plain expressions, for the calculator annotations ``<<expr=result>>`` of GSM8K solutions.

One evaluator serves both sides: :mod:`~embedsdg_hf.quality.verify` checks a written annotation with it, and the
in-process teacher's calculator (:mod:`~embedsdg_hf.generation.constrained`) computes the result it writes.

Example:
    >>> evaluate_arithmetic("48/2"), format_result(evaluate_arithmetic("10/3"))
    (Fraction(24, 1), '3.33')
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from fractions import Fraction

__all__ = ["MAX_EXPRESSION_CHARS", "evaluate_arithmetic", "format_result", "shorten"]

MAX_EXPRESSION_CHARS = 200  # real GSM8K annotations are at most 36 characters
MAX_EXPONENT = 64
MAX_BITS = 4096  # numerator and denominator of every intermediate value; 2**4096 is a 1234-digit number
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d,])")
_LITERAL = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_BINARY: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: operator.mod,
}
_ALLOWED = "numbers, + - * / // % **, unary + and -, and parentheses"


def evaluate_arithmetic(expr: str) -> Fraction:
    """The exact value of an arithmetic expression, computed from its syntax tree (never ``eval``).

    Allowed: integer and decimal literals (``12``, ``1.5``, ``.5``, ``1,000`` with thousands separators), binary
    ``+ - * / // % **``, unary ``+``/``-`` and parentheses. ``**`` needs an integer exponent with
    ``|exponent| <= 64``, and no value may grow past 4096 bits, so ``9**9**9`` fails at once instead of running for
    hours. Everything else (names, calls, attributes, strings, comparisons, ``1e5``, ``0x1f``, an expression over
    200 characters) raises ``ValueError``, as does a division by zero.

    Example:
        >>> evaluate_arithmetic("2*(3+4) - 1,000/8")
        Fraction(-111, 1)
        >>> evaluate_arithmetic("10/3"), evaluate_arithmetic(".5**2")
        (Fraction(10, 3), Fraction(1, 4))
    """
    if not isinstance(expr, str):
        raise ValueError(f"An arithmetic expression must be a string, got {type(expr).__name__}.")
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise ValueError(
            f"Arithmetic expression of {len(expr)} characters refused (at most {MAX_EXPRESSION_CHARS}): "
            f"{shorten(expr)}."
        )
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), expr.strip())
    if not text:
        raise ValueError("Empty arithmetic expression.")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
        raise ValueError(f"Not an arithmetic expression ({type(err).__name__}): {shorten(expr)}.") from None
    try:
        return _value(tree.body, text)
    except RecursionError:
        raise ValueError(f"Arithmetic expression nested too deeply: {shorten(expr)}.") from None


def _value(node: ast.AST, text: str) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        literal = ast.get_source_segment(text, node) or ""
        if not _LITERAL.fullmatch(literal):
            raise ValueError(f"Number literal {literal!r} is not allowed (only 12, 1.5, .5, 1,000): {shorten(text)}.")
        return Fraction(literal)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _value(node.operand, text)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and (type(node.op) in _BINARY or isinstance(node.op, ast.Pow)):
        left, right = _value(node.left, text), _value(node.right, text)
        if isinstance(node.op, ast.Pow):
            return _bounded(_power(left, right, text), text)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ValueError(f"Division by zero in {shorten(text)}.")
        return _bounded(_BINARY[type(node.op)](left, right), text)
    what = f"The constant {node.value!r}" if isinstance(node, ast.Constant) else type(node).__name__
    raise ValueError(f"{what} is not allowed in arithmetic (only {_ALLOWED}): {shorten(text)}.")


def _power(base: Fraction, exponent: Fraction, text: str) -> Fraction:
    if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise ValueError(
            f"Exponent {exponent} refused (it must be an integer from -{MAX_EXPONENT} to {MAX_EXPONENT}): "
            f"{shorten(text)}."
        )
    if base == 0 and exponent < 0:
        raise ValueError(f"Division by zero (0 to a negative power) in {shorten(text)}.")
    bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(int(exponent))
    if bits > MAX_BITS:
        raise ValueError(f"Power too large (about {bits} bits, at most {MAX_BITS}): {shorten(text)}.")
    return base ** int(exponent)


def _bounded(value: Fraction, text: str) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise ValueError(f"Value too large (over {MAX_BITS} bits) in {shorten(text)}.")
    return value


def shorten(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def format_result(value: Fraction, decimals: int = 2) -> str:
    """A value as a calculator writes it in an annotation: an integer as is, else rounded to ``decimals`` places
    (trailing zeros dropped; more places when that would show a non-zero value as 0). Within half a unit of the last
    digit shown, as :func:`~embedsdg_hf.quality.verify.check_solution` requires.

    Example:
        >>> format_result(Fraction(24)), format_result(Fraction(7, 2)), format_result(Fraction(1, 3))
        ('24', '3.5', '0.33')
        >>> format_result(Fraction(-1, 1000))
        '-0.001'
    """
    if value.denominator == 1:
        return str(value.numerator)
    places = decimals
    while True:
        scaled = round(value * 10**places)  # Fraction rounds half to even: within half a unit either way
        if scaled != 0 or places >= 12:
            break
        places += 2
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")
    return sign + text
