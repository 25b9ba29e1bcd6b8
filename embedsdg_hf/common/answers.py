"""Final-answer extraction and comparison for GSM8K (``#### N``) and MATH (``\\boxed{...}``).

- :func:`extract_gsm8k_answer`: the number after the last ``####``; with ``strict=False`` (the default) a completion
  without it falls back to "the answer is N", then to the last number in the text.
- :func:`solution_result`: the number a GSM8K-style solution arrives at, read the way verification reads it (its
  ``#### N`` line, else its last ``<<expr=result>>``, else the last number on its last line that is not an operand);
  :func:`last_line_results` the last line's candidates.
- :func:`extract_boxed`: the content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces).
- :func:`math_equal`: LaTeX-normalised string equality, then numeric equality (integers, decimals, ``\\frac{a}{b}``,
  ``a/b``, percentages) within a relative tolerance, then math-verify (symbolic, sets, intervals, choices).
- :func:`answers_equal`: the comparison for a benchmark kind (``"gsm8k"`` or ``"math"``).

Example:
    >>> extract_gsm8k_answer("She pays 3 * 6 = $18.\\n#### $18.00")
    '18'
    >>> extract_boxed("so $x = \\\\boxed{\\\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    >>> math_equal("\\\\dfrac12", "0.5")
    True
"""

from __future__ import annotations

import logging
import math
import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from .arithmetic import evaluate_arithmetic
from .options import ANSWER_FORMATS

__all__ = [
    "KINDS",
    "NUMBER",
    "annotation_result",
    "answers_equal",
    "extract_boxed",
    "extract_gsm8k_answer",
    "last_line_results",
    "math_equal",
    "normalize_number",
    "number_from_match",
    "solution_result",
    "strip_boxed",
]

logger = logging.getLogger(__name__)

KINDS = ANSWER_FORMATS

# A number as written in a solution: "18", "-3", "1,000", "$1,000.50", "-$5", ".5". A minus sign counts only when it
# does not follow a word character or a closing bracket ("5-3" is a subtraction, its last number is 3, not -3), and a
# number glued to a preceding word ("step2") is not one. Units, "%" and a sentence's final "." are left outside.
NUMBER = re.compile(
    r"(?<![\w)\]}])(?P<sign>-)?(?:\$\s?)?(?P<sign2>-)?"
    r"(?P<digits>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
)
_MAX_NUMBER_CHARS = 100
# GSM8K solutions: a calculator annotation <<expr=result>> and the closing "#### N" line.
ANNOTATION = re.compile(r"<<([^<>]*)>>")
GSM8K_FINAL_LINE = re.compile(r"^[ \t]*####[^\n]*$", re.MULTILINE)
_FRACTION_RESULT = re.compile(r"\s*-?\d+\s*/\s*\d+\s*")
# An operand: a number right after or before + - * / × ÷ or "x" used as a times sign ("2 x $3"); "/" before a word
# is a unit ("$0.49/week").
_OPERATOR_AFTER = re.compile(r"\s*(?:[-+*×÷]|/(?!\s*[A-Za-z])|x(?=\s*[$\d(.]))")
_OPERATOR_BEFORE = re.compile(r"(?:[-+*/×÷]|(?<![A-Za-z])x)\s*\$?\s*$")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)[\s:*=]*", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
MATH_VERIFY_TIMEOUT_S = 2  # per parse / per comparison; SIGALRM takes whole seconds
_POWER_TOWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{?\s*\d{4,}")


def normalize_number(text: str) -> str | None:
    """A canonical string for a number: no ``$``, commas or trailing zeros; None when ``text`` is not a number (or
    is over 100 characters long: no answer is, and Python refuses int/str conversions past 4,300 digits).

    Example:
        >>> normalize_number("$1,000.00"), normalize_number("-3"), normalize_number("0.50"), normalize_number("x")
        ('1000', '-3', '0.5', None)
    """
    cleaned = re.sub(r"[\s$,]", "", str(text))
    if len(cleaned) > _MAX_NUMBER_CHARS:
        return None
    if not re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)", cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def number_from_match(match: re.Match) -> str | None:
    """The normalised number of a :data:`NUMBER` match (its sign included)."""
    sign = "-" if (match["sign"] or match["sign2"]) else ""
    return normalize_number(sign + match["digits"])


def extract_gsm8k_answer(text: str | None, *, strict: bool = False) -> str | None:
    """The final numeric answer of a GSM8K-style solution, normalised (see :func:`normalize_number`).

    The answer is the first number after the last ``####`` (``"#### $1,000.00 dollars."`` gives ``"1000"``). Without
    one, ``strict=True`` returns None; ``strict=False`` falls back to the number right after the last "answer is" /
    "answer:", and then to the last number anywhere in the text.

    Example:
        >>> extract_gsm8k_answer("Total: 5-3 = 2 apples. #### -2 apples")
        '-2'
        >>> extract_gsm8k_answer("The answer is 18. See step 2."), extract_gsm8k_answer("It is 7", strict=True)
        ('18', None)
    """
    if not text:
        return None
    if "####" in text:
        match = NUMBER.search(text.rsplit("####", 1)[1])
        if match:
            return number_from_match(match)
    if strict:
        return None
    for answer_is in reversed(list(_ANSWER_IS.finditer(text))):
        match = NUMBER.match(text, answer_is.end())
        if match:
            return number_from_match(match)
    numbers = list(NUMBER.finditer(text))
    return number_from_match(numbers[-1]) if numbers else None


def last_line_results(answer: str) -> tuple[str, list[str]]:
    """A GSM8K-style solution's last line holding a number (annotations and ``#### N`` lines left out) and the
    normalised numbers on it that are not operands.

    Example:
        >>> last_line_results("3 + 8 = <<3+8=11>>11 apples\\n12 - 1 = $11 left")
        ('12 - 1 = $11 left', ['11'])
    """
    text = ANNOTATION.sub("", GSM8K_FINAL_LINE.sub("", answer))
    for line in reversed(text.splitlines()):
        matches = list(NUMBER.finditer(line))
        if matches:
            results = [
                number_from_match(match)
                for match in matches
                if not (_OPERATOR_AFTER.match(line, match.end()) or _OPERATOR_BEFORE.search(line, 0, match.start()))
            ]
            return line, [number for number in results if number is not None]
    return "", []


def annotation_result(result: str) -> tuple[Fraction, int | None] | None:
    """The value of a ``<<expr=result>>`` annotation's result and the decimals it shows: ``"3.30"`` -> (33/10, 2); a
    fraction ``"3/4"`` -> (3/4, None), compared exactly; None when it is neither a number nor a fraction.

    Example:
        >>> annotation_result("$1,000.50"), annotation_result("3/4"), annotation_result("x")
        ((Fraction(2001, 2), 2), (Fraction(3, 4), None), None)
    """
    number = normalize_number(result)
    if number is not None:
        digits = re.sub(r"[\s$,]", "", result)
        return Fraction(number), len(digits.split(".", 1)[1]) if "." in digits else 0
    if _FRACTION_RESULT.fullmatch(result):
        try:
            return evaluate_arithmetic(result), None
        except ValueError:  # a zero denominator
            return None
    return None


def _exact_decimal(value: Fraction) -> str | None:
    """``value`` as a plain decimal string when it has one (3/4 -> "0.75"; 1/3 -> None)."""
    denominator = value.denominator
    for factor in (2, 5):
        while denominator % factor == 0:
            denominator //= factor
    if denominator != 1:
        return None
    return normalize_number(f"{Decimal(value.numerator) / Decimal(value.denominator):f}")


def solution_result(answer: str) -> str | None:
    """The number a GSM8K-style solution arrives at, as verification reads it (``quality/verify.py``): the number of
    its ``#### N`` line, else its last annotation's result, else the last non-operand number of its last line holding
    a number; None when it states none. A final answer equal to it passes verification's final-answer check.

    Example:
        >>> solution_result("2 * 3 = <<2*3=6>>6 cars\\nSo 6 + 4 = 10 wheels")
        '6'
        >>> solution_result("So it cost 192*100=$1920"), solution_result("No numbers here.")
        ('1920', None)
    """
    stated = extract_gsm8k_answer(answer, strict=True)
    if stated is not None:
        return stated
    annotations = ANNOTATION.findall(answer)
    if annotations:
        stated = annotation_result(annotations[-1].rpartition("=")[2])
        result = _exact_decimal(stated[0]) if stated is not None else None
        if result is not None:
            return result
    numbers = last_line_results(answer)[1]
    return numbers[-1] if numbers else None


def extract_boxed(text: str | None) -> str | None:
    """The content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (nested and escaped braces allowed), stripped.

    ``\\boxed 5`` (no braces) gives ``"5"``; an empty box gives None. An unclosed last box (a truncated completion)
    gives None: an earlier box is not taken instead, since it is not the final answer.

    Example:
        >>> extract_boxed("first \\\\boxed{1}, then \\\\boxed{\\\\frac{\\\\sqrt{3}}{2}}")
        '\\\\frac{\\\\sqrt{3}}{2}'
        >>> extract_boxed("\\\\boxed{\\\\frac{1}{2}") is None
        True
    """
    if not text:
        return None
    boxes = list(_BOXED.finditer(text))
    if not boxes:
        return None
    position = boxes[-1].end()
    while position < len(text) and text[position].isspace():
        position += 1
    if position >= len(text):
        return None
    if text[position] != "{":
        token = re.match(r"[^\s$]+", text[position:])
        return token.group(0) if token else None
    depth, start, index = 0, position + 1, position
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2  # an escaped character (\{, \}, \\) never opens or closes the box
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:index].strip() or None
        index += 1
    return None


def strip_boxed(text: str) -> str:
    """A MATH final answer with a surrounding ``\\boxed{...}`` removed; other text is returned as is.

    Example:
        >>> strip_boxed("\\\\boxed{5}"), strip_boxed("5")
        ('5', '5')
    """
    return extract_boxed(text) or text


def _normalize_latex(text: str) -> str:
    """A canonical form of a LaTeX answer for string comparison (in the spirit of the MATH paper's ``is_equiv``)."""
    s = str(text).strip().replace("\n", "")
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\!", "", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%")
    # Units: a trailing \text{...} after a number or a group ("10\text{ cm}^2"); a plain unit word ("10 inches").
    s = re.sub(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}(?:\^\{?\d+\}?)?\s*$", "", s)
    s = re.sub(r"^(-?[\d.,]+)\s+[A-Za-z]{2,}(?:\^\d)?\.?$", r"\1", s)
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:[,;: ]|q?quad)|\s+", "", s)
    # \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}, \frac{1}2 -> \frac{1}{2}; \sqrt2 -> \sqrt{2}.
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = s.rstrip(".")
    s = re.sub(r"^(-?)\.(\d)", r"\g<1>0.\2", s)
    lhs, equals, rhs = s.partition("=")
    if equals and "=" not in rhs and len(lhs) <= 2:  # "x=5" -> "5"
        s = rhs
    return s


def _numeric_values(s: str) -> list[float]:
    """The values a normalised answer can mean: one number, or two for a percentage (50% -> 50 and 0.5)."""
    if s.endswith("%"):
        value = _to_number(s[:-1])
        return [] if value is None else [value, value / 100]
    value = _to_number(s)
    return [] if value is None else [value]


def _to_number(s: str) -> float | None:
    number = normalize_number(s) if re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?", s) else None
    if number is not None:
        return float(number)
    fraction = re.fullmatch(r"(-?)\\frac\{([^{}]+)\}\{([^{}]+)\}", s) or re.fullmatch(r"(-?)([\d.]+)/([\d.]+)", s)
    if fraction:
        numerator, denominator = _to_number(fraction[2]), _to_number(fraction[3])
        if numerator is not None and denominator:
            return (-1 if fraction[1] else 1) * numerator / denominator
    return None


def math_equal(pred: str | None, ref: str | None, *, rel_tol: float = 1e-6) -> bool:
    """Whether two MATH answers are equivalent.

    Compared in turn: the normalised strings (``\\left``/``\\right``, ``\\!``, spaces, ``^\\circ``, ``\\$``, unit
    ``\\text{...}``, ``dfrac``/``tfrac``, ``\\frac12``, a trailing ``.`` and an ``x=`` prefix removed); the numeric
    values (integers, decimals, ``\\frac{a}{b}``, ``a/b``; ``50\\%`` equals ``50`` and ``0.5``) with ``rel_tol``;
    and then `math-verify <https://github.com/huggingface/Math-Verify>`_ (the checker open-r1 and lighteval use):
    symbolic equality, sets and unordered lists (``\\{1,2\\}`` vs ``\\{2,1\\}``), intervals (``x \\in [1,3)`` vs
    ``[1,3)``), choice letters (``\\text{(B)}`` vs ``B``), equations (``x=5`` vs ``5``), each step under a
    :data:`MATH_VERIFY_TIMEOUT_S` timeout.

    Example:
        >>> math_equal("\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)", "(3,\\\\frac{\\\\pi}{2})")
        True
        >>> math_equal("10\\\\%", "0.1")
        True
        >>> math_equal("\\\\frac{\\\\sqrt{2}}{2}", "\\\\sqrt{2}/2"), math_equal("3", "4")
        (True, False)
    """
    if pred is None or ref is None:
        return False
    a, b = _normalize_latex(pred), _normalize_latex(ref)
    if not a or not b:
        return False
    if a == b:
        return True
    values_a, values_b = _numeric_values(a), _numeric_values(b)
    if values_a and values_b:
        return any(math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12) for x in values_a for y in values_b)
    return _math_verify_equal(pred, ref)


def _math_verify_equal(pred: str, ref: str) -> bool:
    """math-verify's verdict: both answers parsed as ``\\boxed{...}``, the reference as gold.

    Its timeouts use ``SIGALRM``, which only the main thread may set; in another thread it runs without one, so
    answers that could keep sympy busy for ever (a power tower such as ``2^{10^{10}}``) are then not compared.
    """
    from math_verify import parse, verify

    timeout = MATH_VERIFY_TIMEOUT_S
    if threading.current_thread() is not threading.main_thread():
        if _POWER_TOWER.search(pred) or _POWER_TOWER.search(ref):
            logger.debug("Not comparing %r and %r outside the main thread (no timeout there): power tower", pred, ref)
            return False
        timeout = None
    gold = parse(f"\\boxed{{{ref}}}", parsing_timeout=timeout)
    target = parse(f"\\boxed{{{pred}}}", parsing_timeout=timeout)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=timeout))


def answers_equal(pred: str | None, ref: str | None, kind: str = "gsm8k") -> bool:
    """Whether a predicted final answer matches the reference, for ``kind`` ``"gsm8k"`` or ``"math"``.

    GSM8K answers are compared as numbers (``"1,000"`` equals ``"1000.00"``); MATH answers with :func:`math_equal`.
    A missing prediction (None) is never equal.

    Example:
        >>> answers_equal("1,000", "1000"), answers_equal("\\\\dfrac{1}{4}", "0.25", kind="math")
        (True, True)
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}.")
    if pred is None or ref is None:
        return False
    if kind == "math":
        return math_equal(pred, ref)
    a, b = normalize_number(pred), normalize_number(ref)
    if a is None or b is None:
        return str(pred).strip() == str(ref).strip()
    return Decimal(a) == Decimal(b)
