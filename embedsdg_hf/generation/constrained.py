"""Per-row constraints for the decode engine (:mod:`~embedsdg_hf.generation.shared_prefix`): a calculator, a grammar
and the token budget, as one :class:`~embedsdg_hf.generation.shared_prefix.DecodeControl`.

- **Calculator** (the GSM8K paper's sampling): when a row has written ``<<expr=``, ``expr`` is evaluated with the
  project's exact evaluator (:func:`~embedsdg_hf.common.arithmetic.evaluate_arithmetic`, the one verification uses)
  and the row is made to emit the result (:func:`~embedsdg_hf.common.arithmetic.format_result`) and ``>>``; the model
  continues from there. An expression the evaluator refuses is left to the model.
- **Grammar** (llguidance, Lark syntax): each row's logits are masked to the tokens its grammar allows next
  (:func:`~embedsdg_hf.generation.parse.example_grammar`: the three sections in order, a numeric final answer for
  GSM8K). Every token a row emits, drawn or forced, advances its matcher; forced tokens are checked against it first
  and dropped if it refuses them, so the two never disagree.
- **Budget** (with a grammar): a grammar cannot see the token budget, so the rows are steered inside it. A question
  that has used ``question_share`` of the budget is closed (``### Answer`` is forced); an answer is closed when only
  ``reserve`` tokens are left (``### <final_answer>`` is forced, outside a calculator annotation).
- **Final answer = the solution's result** (calculator and grammar together, GSM8K): once the final-answer header is
  written, the row is made to emit the number its solution arrives at and stop. The solution is the answer section
  as the parser will read it (:func:`~embedsdg_hf.generation.parse.parse_generation`: a prompt echo or a second
  example cut off), its result read as verification reads it (:func:`~embedsdg_hf.common.answers.solution_result`:
  the ``#### N`` line, else the last annotation's result, else the last line's result). A solution that states no
  number leaves the final answer to the model (the grammar keeps it numeric).

Example:
    >>> control = RowConstraints(tokenizer, budgets=[320], calculator=True)  # doctest: +SKIP
    >>> generate_after_prefix(model, prefix, tails, [320], stops={2}, control=control)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..common.answers import solution_result
from ..common.arithmetic import evaluate_arithmetic, format_result
from .parse import EXAMPLE_SECTIONS, parse_generation

logger = logging.getLogger(__name__)

__all__ = ["RowConstraints", "calculator_result"]

_OPEN = re.compile(r"<<([^<>]*)$")  # an annotation still open at the end of the text
_ANSWER, _FINAL = (header + "\n" for _, header, _ in EXAMPLE_SECTIONS[1:])


def _solution_result(text: str) -> str | None:
    """The result of the solution in ``text`` (a response up to its final-answer header), read as the parser and then
    verification will read it."""
    return solution_result(parse_generation(text + "0").answer)


def calculator_result(expression: str) -> str | None:
    """What the calculator writes after ``<<expression=``: the evaluator's value, formatted; None when refused.

    Example:
        >>> calculator_result("48/2"), calculator_result("10/3"), calculator_result("3 apples")
        ('24', '3.33', None)
    """
    try:
        return format_result(evaluate_arithmetic(expression.replace("$", "")))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4)
def _ll_tokenizer(tokenizer):
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer)


class _ByteBits:
    """``_BYTE_BITS[byte]``: the 8 bits of a byte as bools, lowest first (built on first use)."""

    @functools.cached_property
    def table(self):
        from ..common.models import fork_safe_torch

        torch = fork_safe_torch()
        return (torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1 == 1

    def __getitem__(self, index):
        return self.table[index]


_BYTE_BITS = _ByteBits()


@dataclass
class _Row:
    text: str = ""  # the prefill, then what the row has emitted
    produced: int = 0
    handled: int = -1  # start of the last annotation the calculator has answered (or given up on)
    waiting: str | None = None  # the header a forced section change is writing
    final_forced: bool = False
    matcher: object = None
    stats: dict = field(default_factory=dict)


class RowConstraints:
    """Calculator, grammar and budget for the rows of one :func:`generate_after_prefix` call.

    Args:
        tokenizer: the model's tokenizer (texts to force are tokenized with it).
        budgets: each row's token budget.
        calculator: answer ``<<expr=`` with the evaluator's value.
        grammar: a Lark grammar every row must follow (llguidance), or None.
        prefills: text each row's response already starts with (given to its matcher first).
        stop_id: the token that ends a row (forced after the final answer).
        question_share / reserve: how the budget is kept (see the module docstring).

    ``counts`` says how often each thing happened (``calculator``, ``calculator_refused``, ``closed_question``,
    ``closed_answer``, ``final_forced``, ``forced_rejected``).
    """

    def __init__(
        self,
        tokenizer,
        budgets: Sequence[int],
        *,
        calculator: bool = True,
        grammar: str | None = None,
        prefills: Sequence[str] | None = None,
        stop_id: int | None = None,
        question_share: float = 0.4,
        reserve: int = 24,
    ):
        self.tokenizer = tokenizer
        self.budgets = list(budgets)
        self.calculator = calculator
        self.grammar = grammar
        self.stop_id = tokenizer.eos_token_id if stop_id is None else stop_id
        self.question_share, self.reserve = question_share, reserve
        prefills = list(prefills or [""] * len(self.budgets))
        self.rows = [_Row(text=prefill) for prefill in prefills]
        self.counts: dict[str, int] = {}
        self._bitmask = None
        if grammar is not None:
            import llguidance
            import llguidance.torch

            ll_tokenizer = _ll_tokenizer(tokenizer)
            compiled = llguidance.LLMatcher.grammar_from_lark(grammar)
            first = llguidance.LLMatcher(ll_tokenizer, compiled)
            if first.is_error():
                raise ValueError(f"The grammar does not compile: {first.get_error()}")
            self._bitmask = llguidance.torch.allocate_token_bitmask(len(self.rows), ll_tokenizer.vocab_size)
            for index, row in enumerate(self.rows):
                row.matcher = first if index == 0 else first.deep_copy()
            for row, prefill in zip(self.rows, prefills):
                ids = self._ids(prefill)
                if ids and not row.matcher.consume_tokens(ids):
                    raise ValueError(f"The prefill {prefill!r} does not start a text the grammar allows.")

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def mask(self, rows: list[int], logits) -> None:
        """Mask each row's logits to what its grammar allows next (nothing to do without a grammar)."""
        if self.grammar is None:
            return
        import llguidance.torch

        from ..common.models import fork_safe_torch

        torch = fork_safe_torch()
        bitmask = self._bitmask[: len(rows)]
        for slot, row in enumerate(rows):
            llguidance.torch.fill_next_token_bitmask(self.rows[row].matcher, bitmask, slot)
        width = min(logits.shape[-1], bitmask.shape[-1] * 32)
        # bit j of byte b (little-endian words) allows token 8*b + j: one table lookup per byte
        allowed = _BYTE_BITS[bitmask.view(torch.uint8).long()].reshape(len(rows), -1)[:, :width]
        logits[:, :width].masked_fill_(~allowed.to(logits.device), float("-inf"))
        if logits.shape[-1] > width:
            logits[:, width:] = float("-inf")
        dead = ~allowed.any(dim=-1)
        if bool(dead.any()):  # a matcher in an error state allows nothing: end the row
            logits[dead, self.stop_id] = 0.0

    def advance(self, row: int, token: int) -> list[int]:
        """Record ``token`` for ``row``; return the tokens it must emit next."""
        state = self.rows[row]
        state.produced += 1
        if state.matcher is not None and not state.matcher.consume_token(token):
            self._count("grammar_error")
        state.text += self.tokenizer.decode([token])
        forced = self._calculator(state) if self.calculator else None
        if forced is None and self.grammar is not None:
            forced = self._budget(state, self.budgets[row])
        if forced is None and self.calculator and self.grammar is not None:
            forced = self._final(state)
        return self._checked(state, forced) if forced else []

    def _calculator(self, state: _Row) -> list[int] | None:
        match = _OPEN.search(state.text)
        if match is None or "=" not in match[1] or match.start() == state.handled:
            return None
        state.handled = match.start()
        expression, _, written = match[1].partition("=")
        result = calculator_result(expression)
        if result is None:
            self._count("calculator_refused")
            return None
        wanted = result + ">>"
        if not wanted.startswith(written):  # the token that wrote "=" also wrote other characters
            self._count("calculator_refused")
            return None
        self._count("calculator")
        return self._ids(wanted[len(written) :])

    def _budget(self, state: _Row, budget: int) -> list[int] | None:
        if state.waiting is not None and state.waiting not in state.text:
            return None  # the forced header is still being written
        state.waiting = None
        newline = "" if state.text.endswith("\n") or not state.text else "\n"
        if _ANSWER not in state.text:
            if state.produced < self.question_share * budget:
                return None
            state.waiting, what = _ANSWER, "closed_question"
        elif _FINAL not in state.text and state.produced >= budget - self.reserve and not _OPEN.search(state.text):
            state.waiting, what = _FINAL, "closed_answer"
        else:
            return None
        self._count(what)
        return self._ids(newline + state.waiting)

    def _final(self, state: _Row) -> list[int] | None:
        if state.final_forced or not state.text.endswith(_FINAL):
            return None
        value = _solution_result(state.text)
        if value is None:
            return None
        state.final_forced = True
        self._count("final_forced")
        return [*self._ids(value), self.stop_id]

    def _checked(self, state: _Row, forced: list[int]) -> list[int]:
        """``forced`` if the row's grammar accepts it from where the row will be, else nothing."""
        if state.matcher is None:
            return forced
        if state.matcher.validate_tokens(forced) != len(forced):
            self._count("forced_rejected")
            state.waiting = None
            return []
        return forced
