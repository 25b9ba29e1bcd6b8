"""Verify a generated example's arithmetic and final answer, as a ``Dataset.map`` transform (no model, no teacher).

:func:`check_solution` checks one solution against its final answer; :func:`add_verification` adds its outcome to
every row (``verify_reason``, ``verify_detail``; both None when the row passes) and ``ds.filter(filter_verified)``
keeps the rows that pass.

GSM8K (``kind="gsm8k"``). The checks run in this order and the first that fails names the row's reason:

1. ``final_answer_not_numeric``: the final answer is not a number
   (:func:`~embedsdg_hf.common.answers.normalize_number`: ``"18"``, ``"$1,000.50"``, ``"-3"``) and holds no single
   number among words (``"18 apples"`` is 18; ``""``, ``"x = 4 or 5"``, ``"twelve"`` are not numbers).
2. Every calculator annotation ``<<expr=result>>``, in text order (the expression is what precedes the last ``=``):

   - ``unparsable_annotation``: the annotation has no ``=``, its result is neither a number nor a fraction ``a/b``,
     or its expression is not plain arithmetic that :func:`evaluate_arithmetic` accepts (names, calls, ``%`` of a
     quantity, units ...). Such an annotation is a *failure*, not skipped: it sits in the training target and cannot
     be shown to be right. ``$`` signs in the expression are ignored. GSM8K train has no such annotation.
   - ``bad_arithmetic``: the result is not the exact value *rounded to the decimals it shows*. A result written
     with ``d`` decimals passes when it is within half a unit of its last digit of the exact value,
     ``|exact - result| <= 0.5 * 10**-d`` (either way on a tie): ``<<10/3=3.33>>`` and ``<<10/3=3.3>>`` pass,
     ``<<10/3=3.4>>`` and ``<<2/3=0.66>>`` (truncated) fail, and an integer result must be the exact value rounded to
     an integer (``<<7/2=4>>`` passes, ``<<7/2=5>>`` fails). Trailing zeros (``<<6*0.10=0.60>>``) count as decimals
     shown; a fraction result (``<<3/4=3/4>>``) must be exact. All 23,716 annotations of GSM8K train are exact; the
     tolerance is for teachers that round as people do.

3. ``final_answer_mismatch``: the solution has a ``#### N`` line whose N differs from the final answer, or the final
   answer is not the solution's result. The result is read from the end of the solution: the last annotation's
   result, or a number stated on the solution's last line holding a number (annotations and the ``#### N`` line left
   out) that is not an operand, i.e. not right before or after ``+ - * / x × ÷`` (in ``"12 - 1 = $11 left"`` only
   11 counts). GSM8K solutions often end with an unannotated step (``"So it cost 192*100=$1920"``), so the last
   annotation alone would fail 5% of real GSM8K; with this rule 99.7% of GSM8K train passes, and the 20 rows that
   fail are real faults (a final answer the solution never reaches, dollars in the solution but cents in
   ``#### N``, ``100 000`` written with a space). Numbers are compared as numbers (``"1,000"`` equals ``"1000.0"``).

MATH (``kind="math"``): ``missing_boxed`` when the solution has no complete ``\\boxed{...}``, ``boxed_mismatch`` when
its last box is not :func:`~embedsdg_hf.common.answers.math_equal` to the final answer (a final answer itself written
as ``\\boxed{...}`` is unwrapped first).

Every row is checked, parser rejects included (their empty solution fails); a missing value (None) counts as ``""``.
The reasons form the fixed vocabulary :data:`VERIFY_REASONS`; ``verify_detail`` says what was wrong in words.

Public API: :func:`evaluate_arithmetic`, :func:`check_solution`, :func:`add_verification`, :func:`filter_verified`,
:func:`count_reasons`, :data:`VERIFY_REASONS`.

Example:
    >>> check_solution("Half of 48 is 48/2=<<48/2=24>>24.\\n#### 24", "24")
    (None, None)
    >>> check_solution("She has 3*7=<<3*7=20>>20 pens.", "20")[0]
    'bad_arithmetic'
"""

from __future__ import annotations

import logging
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from typing import Any

import datasets

from ..common.answers import (
    ANNOTATION,
    GSM8K_FINAL_LINE,
    KINDS,
    NUMBER,
    annotation_result,
    answers_equal,
    extract_boxed,
    extract_gsm8k_answer,
    last_line_results,
    math_equal,
    normalize_number,
    number_from_match,
    strip_boxed,
)
from ..common.arithmetic import evaluate_arithmetic
from ..common.arithmetic import shorten as _shorten
from ..common.splits import is_streaming, map_batched, splitwise
from ..common.validation import require_columns

logger = logging.getLogger(__name__)

__all__ = [
    "VERIFY_REASONS",
    "add_verification",
    "check_solution",
    "count_reasons",
    "evaluate_arithmetic",
    "filter_verified",
]

FINAL_ANSWER_NOT_NUMERIC = "final_answer_not_numeric"
UNPARSABLE_ANNOTATION = "unparsable_annotation"
BAD_ARITHMETIC = "bad_arithmetic"
FINAL_ANSWER_MISMATCH = "final_answer_mismatch"
MISSING_BOXED = "missing_boxed"
BOXED_MISMATCH = "boxed_mismatch"
VERIFY_REASONS = (
    FINAL_ANSWER_NOT_NUMERIC,
    UNPARSABLE_ANNOTATION,
    BAD_ARITHMETIC,
    FINAL_ANSWER_MISMATCH,
    MISSING_BOXED,
    BOXED_MISMATCH,
)


def _show(value: Fraction) -> str:
    """A value for a message: ``24``, ``0.25``, ``3.333333 (10/3)``; very long numbers in scientific notation."""
    if value.denominator == 1 and len(str(value.numerator)) <= 30:
        return str(value.numerator)
    approx = Decimal(value.numerator) / Decimal(value.denominator)  # no float: it would overflow past 1e308
    if not Decimal("1e-6") <= abs(approx) < Decimal("1e15"):
        return f"{approx:.6e}"
    decimal = f"{approx:.6f}".rstrip("0").rstrip(".")
    return decimal if Fraction(decimal) == value or len(str(value)) > 30 else f"{decimal} ({value})"


def _check_annotation(annotation: str) -> tuple[str | None, str | None, Fraction | None]:
    """(reason, detail, the stated result) of one ``<<expr=result>>``."""
    expression, equals, result = annotation[2:-2].rpartition("=")
    if not equals:
        return (
            UNPARSABLE_ANNOTATION,
            f"annotation {_shorten(annotation)} has no '=' (expected <<expression=result>>)",
            None,
        )
    stated = annotation_result(result)
    if stated is None:
        return (
            UNPARSABLE_ANNOTATION,
            f"annotation {_shorten(annotation)}: its result {_shorten(result.strip())} is not a number",
            None,
        )
    value, decimals = stated
    try:
        exact = evaluate_arithmetic(expression.replace("$", ""))
    except ValueError as err:
        return UNPARSABLE_ANNOTATION, f"annotation {_shorten(annotation)}: {err}", value
    tolerance = 0 if decimals is None else Fraction(1, 2 * 10**decimals)  # half a unit of the last digit shown
    if abs(exact - value) > tolerance:
        detail = f"annotation {_shorten(annotation)}: {expression.strip()} = {_show(exact)}, not {_show(value)}"
        return BAD_ARITHMETIC, detail, value
    return None, None, value


def _final_number(final_answer: str) -> str | None:
    """The final answer as a normalised number: the whole text (``"$1,000"``), or its only number (``"18 apples"``)."""
    number = normalize_number(final_answer)
    if number is None:
        matches = list(NUMBER.finditer(final_answer))
        number = number_from_match(matches[0]) if len(matches) == 1 else None
    return number


def _check_gsm8k(answer: str, final_answer: str) -> tuple[str | None, str | None]:
    final = _final_number(final_answer)
    if final is None:
        return FINAL_ANSWER_NOT_NUMERIC, f"final answer {_shorten(final_answer.strip())} is not a number"
    last_result = None
    for match in ANNOTATION.finditer(answer):
        reason, detail, last_result = _check_annotation(match.group(0))
        if reason is not None:
            return reason, detail
    lines = GSM8K_FINAL_LINE.findall(answer)
    if lines:
        stated = extract_gsm8k_answer(answer, strict=True)
        if not answers_equal(stated, final):
            return (
                FINAL_ANSWER_MISMATCH,
                f"its line {_shorten(lines[-1].strip())} differs from the final answer {final}",
            )
    last_line, numbers = last_line_results(answer)
    candidates = [Fraction(number) for number in numbers] + ([last_result] if last_result is not None else [])
    if Fraction(final) not in candidates:
        found = [f"the last annotation's result {_show(last_result)}"] if last_result is not None else []
        if numbers:
            found.append(f"its last line's result(s) {', '.join(numbers)} in {_shorten(last_line.strip())}")
        detail = f"final answer {final} is not the solution's result ({' or '.join(found) or 'it states no number'})"
        return FINAL_ANSWER_MISMATCH, detail
    return None, None


def _check_math(answer: str, final_answer: str) -> tuple[str | None, str | None]:
    boxed = extract_boxed(answer)
    if boxed is None:
        return MISSING_BOXED, "the solution has no complete \\boxed{...}"
    reference = strip_boxed(final_answer)
    if not math_equal(boxed, reference):
        detail = f"the solution's last box holds {_shorten(boxed)}, the final answer is {_shorten(reference.strip())}"
        return BOXED_MISMATCH, detail
    return None, None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; allowed: {', '.join(map(repr, KINDS))}.")


def check_solution(
    answer: str | None, final_answer: str | None, *, kind: str = "gsm8k"
) -> tuple[str | None, str | None]:
    """Check one solution against its final answer: ``(reason, detail)``, both None when it passes.

    ``reason`` is one of :data:`VERIFY_REASONS`; ``detail`` says what was wrong (the module docstring gives the
    rules). It never raises for any text, however hostile; a ``kind`` other than ``"gsm8k"`` or ``"math"`` raises
    ``ValueError``.

    Example:
        >>> check_solution("10/3=<<10/3=3.33>>3.33 kg each.\\n#### 3.33", "3.33")
        (None, None)
        >>> check_solution("3*7=<<3*7=20>>20", "20")
        ('bad_arithmetic', "annotation '<<3*7=20>>': 3*7 = 21, not 20")
        >>> check_solution("So $x = \\\\boxed{\\\\frac{1}{2}}$.", "0.5", kind="math")
        (None, None)
    """
    _check_kind(kind)
    answer, final_answer = ("" if value is None else str(value) for value in (answer, final_answer))
    return _check_gsm8k(answer, final_answer) if kind == "gsm8k" else _check_math(answer, final_answer)


class _Verifier:
    """The ``Dataset.map`` function of :func:`add_verification` (state: the kind and the column names)."""

    def __init__(self, kind: str, answer_column: str, final_column: str, reason_column: str, detail_column: str):
        self.kind, self.answer_column, self.final_column = kind, answer_column, final_column
        self.reason_column, self.detail_column = reason_column, detail_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list[str | None]]:
        checks = [
            check_solution(answer, final, kind=self.kind)
            for answer, final in zip(batch[self.answer_column], batch[self.final_column])
        ]
        return {self.reason_column: [c[0] for c in checks], self.detail_column: [c[1] for c in checks]}


@splitwise()
def add_verification(
    ds: datasets.Dataset,
    *,
    kind: str = "gsm8k",
    answer_column: str = "answer",
    final_column: str = "final_answer",
    reason_column: str = "verify_reason",
    detail_column: str = "verify_detail",
    **map_kwargs: Any,
) -> datasets.Dataset:
    """Add ``reason_column`` and ``detail_column`` (strings, None when the row passes) from :func:`check_solution`.

    One batched, deterministic ``map`` (cached by ``datasets``; ``num_proc`` works); ``map_kwargs`` go to it. An
    empty dataset comes back empty, with the two columns. ``ds`` may also be an ``IterableDataset`` (verified as
    rows are read) or a ``DatasetDict`` / ``IterableDatasetDict`` (every split).

    Example:
        >>> synthetic = datasets.Dataset.from_dict({
        ...     "answer": ["2*3 = <<2*3=6>>6\\n#### 6", "2*3 = <<2*3=7>>7\\n#### 7", "1+1 = <<1+1=2>>2\\n#### 3"],
        ...     "final_answer": ["6", "7", "3"],
        ... })
        >>> synthetic = add_verification(synthetic)
        >>> count_reasons(synthetic, "verify_reason")
        {'bad_arithmetic': 1, 'final_answer_mismatch': 1}
        >>> len(synthetic.filter(filter_verified))
        1
    """
    _check_kind(kind)
    require_columns(ds, [answer_column, final_column])
    map_kwargs.setdefault("desc", f"Verifying {kind} solutions")
    out = map_batched(
        ds,
        _Verifier(kind, answer_column, final_column, reason_column, detail_column),
        new_features={reason_column: datasets.Value("string"), detail_column: datasets.Value("string")},
        step="add_verification",
        **map_kwargs,
    )
    if not is_streaming(out):
        failures = count_reasons(out, reason_column)
        logger.info(
            "add_verification(kind=%r): %d of %d rows pass; failures by reason %s.",
            kind,
            len(out) - sum(failures.values()),
            len(out),
            failures,
        )
    return out


def filter_verified(example: dict[str, Any]) -> bool:
    """``Dataset.filter`` predicate: keep the rows :func:`add_verification` passed (``verify_reason`` is None).

    Example:
        >>> filter_verified({"verify_reason": None}), filter_verified({"verify_reason": "bad_arithmetic"})
        (True, False)
    """
    return example["verify_reason"] is None


def count_reasons(ds: datasets.Dataset, column: str = "verify_reason") -> dict[str, int]:
    """How many rows have each reason in ``column`` (rows whose reason is None are not counted), sorted by reason.

    Example:
        >>> count_reasons(datasets.Dataset.from_dict({"verify_reason": [None, "bad_arithmetic", None]}))
        {'bad_arithmetic': 1}
    """
    require_columns(ds, [column])
    counts = Counter(ds.with_format("arrow")[column].to_pylist())
    counts.pop(None, None)
    return dict(sorted(counts.items()))
