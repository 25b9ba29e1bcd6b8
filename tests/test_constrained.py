"""Constrained decoding of the in-process teacher (generation/constrained.py): the calculator writes the evaluator's
value, the grammar holds the parser's format, and with the real built-in model a row that fails verification
without them passes with them. Config defaults leave HTTP teachers as they are."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from embedsdg_hf.common.arithmetic import evaluate_arithmetic, format_result
from embedsdg_hf.config import PipelineConfig
from embedsdg_hf.generation.constrained import RowConstraints, calculator_result
from embedsdg_hf.generation.parse import example_grammar, example_json_schema, json_response_format, parse_generation
from embedsdg_hf.generation.teachers import SamplingParams, TeacherRequest, TransformersTeacher
from embedsdg_hf.quality.verify import check_solution

MODEL = "smollm2-135m-instruct"
PREFILL = "### Question\n"
ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


@pytest.fixture(scope="module")
def tokenizer():
    from embedsdg_hf.common.models import load_tokenizer

    return load_tokenizer(MODEL)


@pytest.mark.parametrize("expression", ["48/2", "12*7", "10/3", "(3+4)*2 - 1,000/8", "2/3", "$5*3", "0.1*0.2"])
def test_calculator_writes_what_verification_accepts(expression):
    result = calculator_result(expression)
    assert result == format_result(evaluate_arithmetic(expression.replace("$", "")))
    assert check_solution(f"So {expression}=<<{expression}={result}>>{result}.", result) == (None, None)


def test_format_result_is_within_half_a_unit_of_the_last_digit():
    for value in (Fraction(1, 3), Fraction(2, 3), Fraction(-7, 2), Fraction(1, 1000), Fraction(123456789, 7)):
        text = format_result(value)
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert abs(Fraction(text) - value) <= Fraction(1, 2 * 10**decimals), (value, text)
    assert calculator_result("3 apples") is None and calculator_result("1/0") is None


def test_the_row_is_made_to_emit_the_evaluators_value(tokenizer):
    control = RowConstraints(tokenizer, [64], calculator=True)
    forced = []
    for token in tokenizer("He has 12*7=<<12*7=", add_special_tokens=False)["input_ids"]:
        forced = control.advance(0, token)
    assert tokenizer.decode(forced) == calculator_result("12*7") + ">>" == "84>>"
    assert control.counts == {"calculator": 1}
    for token in forced:  # the forced tokens are emitted: no second answer to the same annotation
        assert control.advance(0, token) == []


def _forced_final(tokenizer, text):
    """Feed ``text`` (after the prefill) to a calculator+grammar row; the text of what it forces at the end."""
    control = RowConstraints(tokenizer, [400], calculator=True, grammar=example_grammar("gsm8k"), prefills=[PREFILL])
    forced = []
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        forced = control.advance(0, token)
    return tokenizer.decode(forced, skip_special_tokens=True), control


@pytest.mark.parametrize(
    ("text", "final"),
    [
        # the parser cuts the answer at the echoed prompt label: the result is the answer's, not the echo's 297
        (
            "A man packs 188 boxes twice.\n### Answer\nA: 2*188 = 376\n376\nPartial Example:\n"
            "It holds 27*11=<<27*11=297>>297 apples\n### <final_answer>\n",
            "376",
        ),
        # the last annotation's result, though the last line states another number
        ("Tom has 3 bags of 4.\n### Answer\n3*4=<<3*4=12>>12\nHe gives 2 away.\n### <final_answer>\n", "12"),
        # no annotation: the last line's result, not its operands
        ("Tom has 3 bags of 4.\n### Answer\nSo it is 3 * 4 = 12 apples\n### <final_answer>\n", "12"),
    ],
)
def test_the_final_answer_is_the_solutions_result_as_verification_reads_it(tokenizer, text, final):
    forced, control = _forced_final(tokenizer, text)
    assert forced == final and control.counts.get("final_forced") == 1
    parsed = parse_generation(PREFILL + text + forced)
    assert parsed.accepted and check_solution(parsed.answer, parsed.final_answer) == (None, None)


def test_a_solution_without_a_number_leaves_the_final_answer_to_the_model(tokenizer):
    forced, control = _forced_final(tokenizer, "Tom has apples.\n### Answer\nHe has many.\n### <final_answer>\n")
    assert forced == "" and "final_forced" not in control.counts


def test_grammar_accepts_the_parsers_format_and_nothing_else(tokenizer):
    import llguidance

    from embedsdg_hf.generation.constrained import _ll_tokenizer

    matcher = llguidance.LLMatcher(_ll_tokenizer(tokenizer), llguidance.LLMatcher.grammar_from_lark(example_grammar()))
    good = (
        "### Question\nTom has 3 bags of 4 pens.\nHow many pens?\n### Answer\n3*4=<<3*4=12>>12 pens.\n"
        "### <final_answer>\n12"
    )
    ids = tokenizer(good, add_special_tokens=False)["input_ids"]
    assert matcher.validate_tokens(ids) == len(ids)
    parsed = parse_generation(good)
    assert parsed.accepted and check_solution(parsed.answer, parsed.final_answer) == (None, None)
    for bad in (
        "### Answer\n",  # sections out of order
        "### Question\nHow many?\n### Answer\n12\n#### 12\n",  # a '#### N' line inside the answer
        "### Question\nHow many?\n### Answer\n12\n### <final_answer>\ntwelve",  # not a number (gsm8k)
        "### Question\nHow many?\n### Answer\n3*4=<<3 apples=",  # not arithmetic inside an annotation
    ):
        bad_ids = tokenizer(bad, add_special_tokens=False)["input_ids"]
        matcher.reset()
        assert matcher.validate_tokens(bad_ids) < len(bad_ids), bad


def test_one_description_serves_both_paths():
    """The JSON form sent to OpenAI-compatible servers and the text grammar come from the same sections; unless
    asked for an answer format, the JSON form is what it always was."""
    assert json_response_format()["json_schema"]["schema"] == example_json_schema()
    assert "pattern" not in example_json_schema()["properties"]["final_answer"]
    pattern = example_json_schema("gsm8k")["properties"]["final_answer"]["pattern"]
    assert pattern.strip("^$") in example_grammar("gsm8k")


def test_defaults_leave_http_teachers_alone():
    assert PipelineConfig().teacher_decoding() == {"attempts": 2, "calculator": True, "grammar": "gsm8k"}
    http = PipelineConfig(teacher="openai:m@http://127.0.0.1:1/v1")
    assert http.teacher_decoding() == {"attempts": 1, "calculator": False, "grammar": None}
    assert (
        PipelineConfig(teacher="openai:m@http://127.0.0.1:1/v1", teacher_attempts=3).teacher_decoding()["attempts"]
        == 3
    )
    assert PipelineConfig(answer_format="math").teacher_decoding()["grammar"] == "math"
    with pytest.raises(ValueError, match="teacher_calculator apply to in-process"):
        PipelineConfig(teacher="openai:m@http://127.0.0.1:1/v1", teacher_calculator=True)
    with pytest.raises(ValueError, match="teacher_attempts must be >= 1"):
        PipelineConfig(teacher_attempts=0)


def test_constraints_are_part_of_the_teachers_identity():
    plain = TransformersTeacher(MODEL).identity()
    assert "calculator" not in plain and "grammar" not in plain
    constrained = TransformersTeacher(MODEL, calculator=True, grammar="gsm8k").identity()
    assert constrained["calculator"] and constrained["grammar"].startswith("gsm8k")
    with pytest.raises(ValueError, match="grammar must be one of"):
        TransformersTeacher(MODEL, grammar="json")


# ----------------------------------------------------------------------------------------------------------------
# The real built-in model
# ----------------------------------------------------------------------------------------------------------------

PROMPT = (
    "Write one new grade-school math word problem and its solution, like this example.\n"
    "### Question\nNatalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?\n### Answer\n"
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether.\n"
    "### <final_answer>\n72\n\nStart the question with ### Question, the answer with ### Answer, and the final "
    "answer with ### <final_answer>. Write every computation as <<a*b=c>>."
)
SEEDS = (0, 1, 2, 3, 4, 5)


def _outcomes(teacher, max_tokens=160):
    requests = [
        TeacherRequest(({"role": "user", "content": PROMPT},), SamplingParams(0.7, 0.95, max_tokens), seed, PREFILL)
        for seed in SEEDS
    ]
    responses = {}
    teacher.generate(requests, lambda i, r: responses.__setitem__(i, r), progress=False)
    outcomes = []
    for index in range(len(requests)):
        response = responses[index]
        parsed = parse_generation(PREFILL + response.text, finish_reason=response.finish_reason)
        reason = parsed.reject_reason or check_solution(parsed.answer, parsed.final_answer)[0]
        outcomes.append((reason, PREFILL + response.text))
    return outcomes


@pytest.mark.slow
def test_real_model_rows_that_fail_without_constraints_pass_with_them():
    """Same prompt, same seeds: free decoding gives rows that fail the parser or verification; with the calculator
    and the grammar the same requests give verified rows, and every annotation holds the evaluator's value."""
    free = _outcomes(TransformersTeacher(MODEL))
    constrained = _outcomes(TransformersTeacher(MODEL, calculator=True, grammar="gsm8k"))
    rescued = [seed for seed, (f, c) in zip(SEEDS, zip(free, constrained)) if f[0] is not None and c[0] is None]
    assert rescued, (free, constrained)
    assert sum(c[0] is None for c in constrained) > sum(f[0] is None for f in free)
    annotations = [m for _, text in constrained for m in ANNOTATION.finditer(text)]
    assert annotations
    for match in annotations:
        if calculator_result(match[1]) is not None:
            assert match[2] == calculator_result(match[1])


def test_real_model_annotation_results_are_the_evaluators_values():
    """Greedy, short: the calculator answers every evaluable annotation the model opens, with the evaluator's value."""
    teacher = TransformersTeacher(MODEL, calculator=True)
    request = TeacherRequest(
        ({"role": "user", "content": PROMPT},),
        SamplingParams(0, 1.0, 48),
        prefill=PREFILL + "Tom has 12 boxes of 7 pens and buys 5 more pens.\nHow many pens?\n### Answer\nHe has 12*7",
    )
    responses = []
    teacher.generate([request], lambda i, r: responses.append(r), progress=False)
    (response,) = responses
    matches = list(ANNOTATION.finditer(response.text))
    assert matches, response.text
    for match in matches:
        assert match[2] == calculator_result(match[1]), response.text


@pytest.mark.slow
def test_evaluate_with_the_calculator_writes_the_evaluators_values(monkeypatch):
    """``evaluate_model(..., calculator=True)``: the student decodes through the engine with the calculator; every
    evaluable annotation in its completions holds the evaluator's value, a completion that opens none is the same as
    the engine's without the calculator, and the results say how it decoded. (The 135M student rarely opens ``<<``
    on its own: on these rows it writes none, so the second check is the one that bites.)"""
    import datasets

    from embedsdg_hf.training.evaluate import evaluate_model

    rows = [__import__("json").loads(line) for line in open("../shared/data/gsm8k/test.jsonl")][:4]
    data = datasets.Dataset.from_list(rows)
    with pytest.raises(ValueError, match="calculator needs backend='transformers' and kind='gsm8k'"):
        evaluate_model(MODEL, data, kind="gsm8k", calculator=True, backend="vllm")
    predictions, results = evaluate_model(MODEL, data, kind="gsm8k", calculator=True, max_new_tokens=96, batch_size=4)
    assert results["decoding"] == "greedy + calculator" and results["n"] == 4
    from embedsdg_hf.generation import constrained

    monkeypatch.setattr(constrained, "RowConstraints", lambda *args, **kwargs: None)  # the same engine, no control
    plain, _ = evaluate_model(MODEL, data, kind="gsm8k", calculator=True, max_new_tokens=96, batch_size=4)
    for with_calculator, without in zip(predictions["completion"], plain["completion"]):
        matches = list(ANNOTATION.finditer(with_calculator))
        if not matches:
            assert with_calculator == without
        for match in matches:
            if calculator_result(match[1]) is not None:
                assert match[2] == calculator_result(match[1])
