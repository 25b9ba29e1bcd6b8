"""parse_generation: well-formed and sloppy teacher outputs, missing sections, several examples, rejects."""

from __future__ import annotations

import pytest

from embedsdg_hf.generation.parse import (
    EXAMPLE_JSON_SCHEMA,
    REJECT_REASONS,
    ParsedExample,
    json_response_format,
    parse_generation,
    response_format_from_spec,
)

WELL_FORMED = """### Question
Maria buys 3 boxes of 12 pencils. How many pencils does she have?
### Answer
She has 3*12 = <<3*12=36>>36 pencils.
### <final_answer>
36
"""


def test_well_formed():
    parsed = parse_generation(WELL_FORMED)
    assert parsed == ParsedExample(
        question="Maria buys 3 boxes of 12 pencils. How many pencils does she have?",
        answer="She has 3*12 = <<3*12=36>>36 pencils.",
        final_answer="36",
        reject_reason=None,
    )
    assert parsed.accepted


@pytest.mark.parametrize(
    "text",
    [
        "### question\nQ?\n### answer\nA.\n### final answer\n7",
        "  ###   QUESTION  \nQ?\n##  Answer:\nA.\n### Final Answer:\n7",
        "### Question:\nQ?\n### Answer\nA.\n### <final_answer>: 7",
        "### Question: Q?\n### Answer: A.\n### <final_answer> ####\n7",
        "### **Question**\nQ?\n### **Answer**\nA.\n### **Final Answer**\n**7**",
        "### Question\nQ?\n### Answer\nA.\n### <final_answer>\n#### 7\n",
        "### Question\nQ?\n### Answer\nA.\n### final_answer\n7\n\nThat's the final answer.",
        "Here is a new problem.\n\n### Question\nQ?\n### Answer\nA.\n### <final_answer>\n7",
    ],
)
def test_tolerant_headers(text):
    assert parse_generation(text) == ParsedExample(question="Q?", answer="A.", final_answer="7")


def test_gsm8k_final_line_is_the_fallback_and_stays_in_the_answer():
    parsed = parse_generation("### Question\nQ?\n### Answer\n2+2 = <<2+2=4>>4 apples.\n#### 4\n")
    assert parsed.final_answer == "4"
    assert parsed.answer == "2+2 = <<2+2=4>>4 apples.\n#### 4"
    assert parsed.accepted


def test_final_answer_section_wins_over_gsm8k_line():
    parsed = parse_generation("### Question\nQ?\n### Answer\nA\n#### 3\n### <final_answer>\n5")
    assert parsed.final_answer == "5"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Q? A. 7", "missing_question"),
        ("### Answer\nA.\n### <final_answer>\n7", "missing_question"),
        ("### Question\n\n### Answer\nA.\n### <final_answer>\n7", "missing_question"),
        ("### Question\nQ?\n### <final_answer>\n7", "missing_answer"),
        ("### Question\nQ?\n### Answer\n   \n### <final_answer>\n7", "missing_answer"),
        ("### Question\nQ?\n### Answer\nA, no final answer.", "missing_final_answer"),
        ("### Question\nQ?\n### Answer\nA.\n### <final_answer>\n   ", "missing_final_answer"),
    ],
)
def test_missing_sections_are_rejected_with_a_reason(text, reason):
    parsed = parse_generation(text)
    assert parsed.reject_reason == reason
    assert not parsed.accepted


def test_sections_found_are_kept_on_a_reject():
    parsed = parse_generation("### Question\nQ?\n### Answer\nA.")
    assert (parsed.question, parsed.answer, parsed.reject_reason) == ("Q?", "A.", "missing_final_answer")


@pytest.mark.parametrize("text", ["", "   \n\t", None])
def test_empty_response(text):
    assert parse_generation(text).reject_reason == "empty_response"


def test_several_examples_take_the_first():
    text = WELL_FORMED + "\n### Question\nSecond?\n### Answer\nSecond answer.\n### <final_answer>\n99\n"
    parsed = parse_generation(text)
    assert (parsed.question, parsed.final_answer, parsed.reject_reason) == (
        "Maria buys 3 boxes of 12 pencils. How many pencils does she have?",
        "36",
        None,
    )


def test_truncated_needs_the_cut_inside_the_first_example():
    assert parse_generation("### Question\nQ?\n### Answer\nSo 3*", finish_reason="length").reject_reason == "truncated"
    # All sections present but cut: the final answer itself may be cut short.
    assert parse_generation(WELL_FORMED, finish_reason="length").reject_reason == "truncated"
    # The cut fell in a second example: the first one is complete.
    cut_later = WELL_FORMED + "### Question\nAnother one that is cut"
    assert parse_generation(cut_later, finish_reason="length").accepted
    assert parse_generation(WELL_FORMED, finish_reason="stop").accepted


def test_repeated_prefill_header_is_skipped():
    parsed = parse_generation("### Question\n### Question\nQ?\n### Answer\nA.\n#### 7")
    assert (parsed.question, parsed.final_answer, parsed.reject_reason) == ("Q?", "7", None)


def test_braces_and_hashes_in_content_are_kept():
    text = (
        "### Question\nLet f(x) = {x | x > 2}. What is $\\frac{6}{3}$?\n"
        "### Answer\nThe set {3, 4} ... ## not a header\n6/3 = 2.\n### <final_answer>\n$\\boxed{2}$"
    )
    parsed = parse_generation(text)
    assert parsed.question == "Let f(x) = {x | x > 2}. What is $\\frac{6}{3}$?"
    assert parsed.answer == "The set {3, 4} ... ## not a header\n6/3 = 2."
    assert parsed.final_answer == "$\\boxed{2}$"


def test_words_starting_like_a_header_are_content():
    parsed = parse_generation("### Question\nQ?\n### Answers to part one\nnot a header\n### Answer\nA.\n#### 1")
    assert parsed.question == "Q?\n### Answers to part one\nnot a header"
    assert parsed.answer == "A.\n#### 1"


def test_reject_vocabulary_is_fixed():
    assert set(REJECT_REASONS) == {
        "empty_response",
        "truncated",
        "missing_question",
        "missing_answer",
        "missing_final_answer",
        "invalid_json",
        "teacher_error",
    }


def test_answer_ends_at_its_gsm8k_line_and_rambling_after_it_is_not_truncation():
    text = "### Question\nHow many?\n### Answer\n2*3 = <<2*3=6>>6\n#### 6\nPartial Example:\nA A A A A A"
    parsed = parse_generation(text, finish_reason="length")
    assert parsed.accepted and parsed.answer == "2*3 = <<2*3=6>>6\n#### 6" and parsed.final_answer == "6"
    # Cut right at the final line: the number itself may be cut short, so it stays a truncation.
    cut = parse_generation("### Question\nHow many?\n### Answer\n2*3 = 6\n#### 6", finish_reason="length")
    assert cut.reject_reason == "truncated"


def test_prompt_labels_echoed_by_the_teacher_end_a_section():
    text = (
        "### Question\nA pen costs $3. How much do 4 pens cost?\n\nPartial Example:\nThe original text is: ...\n"
        "### Answer\n4*3 = <<4*3=12>>12\n#### 12"
    )
    parsed = parse_generation(text)
    assert parsed.accepted and parsed.question == "A pen costs $3. How much do 4 pens cost?"
    assert parsed.answer == "4*3 = <<4*3=12>>12\n#### 12"


# The JSON form (structured output)

JSON_EXAMPLE = (
    '{"question": "Maria buys 3 boxes of 12 pencils. How many pencils does she have?", '
    '"answer": "She has 3*12 = <<3*12=36>>36 pencils.", "final_answer": "36"}'
)


@pytest.mark.parametrize(
    "text",
    [
        JSON_EXAMPLE,
        f"  {JSON_EXAMPLE}\n",
        f"```json\n{JSON_EXAMPLE}\n```",
        JSON_EXAMPLE.replace('"36"}', "36}"),  # a number as the final answer
        JSON_EXAMPLE.replace(', "final_answer": "36"', "").replace('36 pencils."', '36 pencils.\\n#### 36"'),
    ],
)
def test_json_form_parses_like_the_markdown_form(text):
    parsed = parse_generation(text)
    expected = parse_generation(WELL_FORMED)
    assert parsed.accepted and parsed.question == expected.question and parsed.final_answer == "36"
    assert parsed.answer.startswith(expected.answer)


def test_json_form_rejects_with_reasons():
    assert parse_generation('{"question": "How many?", "answer": "3*1', finish_reason="length").reject_reason == (
        "truncated"
    )
    assert parse_generation('{"question": "How many?" "answer": 3}').reject_reason == "invalid_json"
    assert parse_generation('```json\n["question", "answer"]\n```').reject_reason == "invalid_json"
    assert parse_generation('{"answer": "3", "final_answer": "3"}').reject_reason == "missing_question"
    assert parse_generation('{"question": "Q?", "final_answer": "3"}').reject_reason == "missing_answer"
    assert parse_generation('{"question": "Q?", "answer": "three"}').reject_reason == "missing_final_answer"
    assert parse_generation('{"question": "Q?", "answer": "3", "final_answer": true}').reject_reason == (
        "missing_final_answer"
    )
    assert "invalid_json" in REJECT_REASONS


def test_response_format_specs():
    assert json_response_format()["json_schema"]["schema"] is EXAMPLE_JSON_SCHEMA
    assert response_format_from_spec("json") == json_response_format()
    assert response_format_from_spec('{"type": "json_object"}') == {"type": "json_object"}
    for bad in ("yaml", '{"schema": {}}', "[1]"):
        with pytest.raises(ValueError, match="teacher_response_format"):
            response_format_from_spec(bad)
