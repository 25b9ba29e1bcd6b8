"""Parse a teacher's generated example (``### Question`` / ``### Answer`` / ``### <final_answer>``; Listings 2, 4).

The parser is tolerant of what teachers actually write: any case, 2-4 ``#``, extra spaces, a colon, bold markers,
``### Final Answer`` / ``### final_answer`` for ``### <final_answer>``, text on the header line itself
(``### Question: How many ...``), and trailing ``#`` (``### <final_answer> ####``). Without a final-answer section,
the GSM8K line ``#### N`` at the end of the answer gives the final answer. When the response holds several examples,
the first one is taken (not a reject). A response that cannot be used keeps a reason, from a small fixed vocabulary
(:data:`REJECT_REASONS`):

- ``empty_response``: no text (or only whitespace);
- ``truncated``: the teacher stopped on its token limit (``finish_reason="length"``) inside the first example
  (an answer whose ``#### N`` line was finished is complete: the answer ends there, what follows is dropped);
- ``missing_question``: no ``### Question`` section, or an empty one;
- ``missing_answer``: no ``### Answer`` section, or an empty one;
- ``missing_final_answer``: neither a final-answer section nor a ``#### N`` line in the answer;
- ``invalid_json``: a JSON response (structured output, see below) that is not a JSON object;
- ``teacher_error``: the request failed (set by :func:`~embedsdg_hf.generation.generate.make_synthetic_dataset`, never
here).

**The JSON form.** A teacher asked for structured output (``response_format``: :func:`json_response_format`, i.e.
vLLM guided decoding / OpenAI JSON schema with :data:`EXAMPLE_JSON_SCHEMA`) answers with one object
``{"question": ..., "answer": ..., "final_answer": ...}``; a response that starts with ``{`` (or a fenced
```` ```json ```` block) is read that way, with the same reasons (a final answer given as a number is kept as text;
without one, the answer's ``#### N`` line gives it; unparsable JSON cut at the token limit is ``truncated``).

Public API: :func:`parse_generation`, :class:`ParsedExample`, :data:`REJECT_REASONS`, :data:`EXAMPLE_JSON_SCHEMA`,
:func:`json_response_format`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXAMPLE_JSON_SCHEMA",
    "EXAMPLE_SECTIONS",
    "REJECT_REASONS",
    "ParsedExample",
    "example_grammar",
    "example_json_schema",
    "json_response_format",
    "parse_generation",
    "response_format_from_spec",
]

EMPTY_RESPONSE = "empty_response"
MISSING_QUESTION = "missing_question"
MISSING_ANSWER = "missing_answer"
MISSING_FINAL_ANSWER = "missing_final_answer"
TRUNCATED = "truncated"
INVALID_JSON = "invalid_json"
TEACHER_ERROR = "teacher_error"
REJECT_REASONS = (
    EMPTY_RESPONSE,
    TRUNCATED,
    MISSING_QUESTION,
    MISSING_ANSWER,
    MISSING_FINAL_ANSWER,
    INVALID_JSON,
    TEACHER_ERROR,
)
#: The one description of a generated example, in order: (JSON field, text header, what it holds). The text form's
#: grammar (:func:`example_grammar`, the in-process teacher) and the JSON form's schema (:func:`example_json_schema`,
#: ``response_format`` for OpenAI-compatible servers) are both made from it.
EXAMPLE_SECTIONS = (
    ("question", "### Question", "The new problem."),
    ("answer", "### Answer", "Its step-by-step solution."),
    ("final_answer", "### <final_answer>", "The final answer alone, e.g. a number."),
)
#: What a final answer may be, per ``answer_format`` (a regex; None: any one line).
FINAL_ANSWER_PATTERNS = {"gsm8k": r"-?[0-9]{1,12}(\.[0-9]{1,4})?", "math": None}


def example_json_schema(answer_format: str | None = None) -> dict[str, Any]:
    """The JSON form of a generated example; with ``answer_format="gsm8k"`` the final answer must be a number.

    Example:
        >>> example_json_schema("gsm8k")["properties"]["final_answer"]["pattern"].startswith("^-?[0-9]{1,12}")
        True
    """
    properties = {name: {"type": "string", "description": what} for name, _, what in EXAMPLE_SECTIONS}
    pattern = FINAL_ANSWER_PATTERNS.get(answer_format) if answer_format is not None else None
    if pattern is not None:
        properties["final_answer"]["pattern"] = f"^{pattern}$"
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name, _, _ in EXAMPLE_SECTIONS],
        "additionalProperties": False,
    }


def example_grammar(answer_format: str | None = "gsm8k") -> str:
    """The text form as a Lark grammar (llguidance): the three headers in order, each on its own line; question and
    answer lines that do not start a header (no ``#``, ``<`` or ``>``, so no ``#### N`` line either); calculator
    annotations ``<<expr=result>>`` in the answer (an arithmetic expression, a number); the final answer one line
    (a number for ``"gsm8k"``), then the end. The token budget is not in it (see ``generation/constrained.py``).

    Example:
        >>> "### <final_answer>" in example_grammar("gsm8k")
        True
    """
    question, answer, final = (json.dumps(header + "\n") for _, header, _ in EXAMPLE_SECTIONS)
    pattern = FINAL_ANSWER_PATTERNS.get(answer_format) if answer_format is not None else None
    rules = [
        f"start: {question} line+ {answer} aline+ {final} FINAL",
        r'line: TEXT "\n"',
        r'aline: (TEXT | annotation)+ "\n"',
        'annotation: "<<" EXPR "=" NUMBER ">>"',
        r"TEXT: /[^#<>\n]+/",
        r"EXPR: /[0-9(][0-9.+\-*\/() ]*/",
        r"NUMBER: /-?[0-9]{1,12}(\.[0-9]{1,6})?/",
        "FINAL: /" + (pattern or r"[^#<>\n]+") + "/",
    ]
    return "\n".join(rules)


#: The JSON form of a generated example (structured output / guided decoding).
EXAMPLE_JSON_SCHEMA = example_json_schema()
_JSON_FENCE = re.compile(r"^```(?:json)?[ \t]*\n(?P<body>.*?)\n?```[ \t]*$", re.DOTALL | re.IGNORECASE)

# A section header on its own line: "### Question", "## answer:", "### **Final Answer**", "### <final_answer> ####",
# "### Question: text on the same line". Group "kind" names the section, group "rest" is same-line content.
_HEADER = re.compile(
    r"^[ \t]*#{2,4}[ \t]*\**[ \t]*"
    r"(?P<kind>question|answer|<?[ \t]*final[ \t_-]*answer[ \t]*>?)(?![A-Za-z0-9_])"
    r"[ \t]*\**[ \t]*:?[ \t]*\**[ \t]*#*[ \t]*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Lines where a teacher starts echoing the generation prompt's own labels (Listings 2 and 4): a section ends there.
_PROMPT_ECHO = re.compile(
    r"^[ \t]*(partial example|example[ \t]*\d*|seed examples?[^\n]*|your task|generated example)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_GSM8K_FINAL = re.compile(r"^[ \t]*####[ \t]*(?P<value>\S.*?)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class ParsedExample:
    """One parsed example. ``reject_reason`` is None when it can be used; the sections found are kept either way."""

    question: str = ""
    answer: str = ""
    final_answer: str = ""
    reject_reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reject_reason is None


def parse_generation(text: str | None, *, finish_reason: str | None = None) -> ParsedExample:
    """Parse the first example of a teacher response; ``finish_reason="length"`` marks a cut-off one as truncated.

    Example:
        >>> parse_generation("### Question\\nWhat is 2+2?\\n### Answer\\n2+2=4\\n### <final_answer>\\n4")
        ParsedExample(question='What is 2+2?', answer='2+2=4', final_answer='4', reject_reason=None)
        >>> parse_generation("### Question\\nWhat is 2+2?\\n### Answer\\n2+2=", finish_reason="length").reject_reason
        'truncated'
    """
    if text is None or not text.strip():
        return ParsedExample(reject_reason=EMPTY_RESPONSE)
    body = text.strip()
    fenced = _JSON_FENCE.match(body)
    if fenced or body.startswith("{"):
        return _parse_json(fenced["body"].strip() if fenced else body, finish_reason)
    sections, complete = _first_example(text)
    question = _cut_prompt_echo(sections.get("question", ""))
    answer, closed = _close_at_gsm8k_line(sections.get("answer", ""))
    answer = _cut_prompt_echo(answer)
    final_answer = _final_answer(sections.get("final", ""), answer)
    if finish_reason == "length" and not (complete or closed):
        return ParsedExample(question=question, answer=answer, final_answer=final_answer, reject_reason=TRUNCATED)
    return _example(question, answer, final_answer)


def _example(question: str, answer: str, final_answer: str) -> ParsedExample:
    """The parsed example, rejected for the first of its three parts that is missing (text and JSON forms alike)."""
    reason = None
    if not question:
        reason = MISSING_QUESTION
    elif not answer:
        reason = MISSING_ANSWER
    elif not final_answer:
        reason = MISSING_FINAL_ANSWER
    return ParsedExample(question=question, answer=answer, final_answer=final_answer, reject_reason=reason)


def json_response_format(*, strict: bool = True, answer_format: str | None = None) -> dict[str, Any]:
    """The OpenAI ``response_format`` asking for :data:`EXAMPLE_JSON_SCHEMA` (vLLM: guided decoding to that schema);
    with ``answer_format``, :func:`example_json_schema` of it (``"gsm8k"``: a numeric final answer).

    Example:
        >>> json_response_format()["json_schema"]["schema"]["required"]
        ['question', 'answer', 'final_answer']
    """
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "generated_example",
            "schema": EXAMPLE_JSON_SCHEMA if answer_format is None else example_json_schema(answer_format),
            "strict": strict,
        },
    }


def response_format_from_spec(spec: str | dict | None) -> dict[str, Any] | None:
    """A recipe's ``teacher_response_format`` as an OpenAI ``response_format``: ``"json"`` gives
    :func:`json_response_format`, ``"json_object"`` plain JSON mode, a JSON text or dict is taken as the object
    itself; None stays None.

    Example:
        >>> response_format_from_spec("json_object"), response_format_from_spec(None)
        ({'type': 'json_object'}, None)
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec.strip() == "json":
            return json_response_format()
        if spec.strip() == "json_object":
            return {"type": "json_object"}
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"teacher_response_format must be 'json', 'json_object' or a response_format object as JSON; "
                f"{spec!r} is none of these ({err})."
            ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(
            f"teacher_response_format must be an OpenAI response_format object with a 'type', got {spec!r}."
        )
    return spec


def _parse_json(body: str, finish_reason: str | None) -> ParsedExample:
    """An example in the JSON form: ``{"question": ..., "answer": ..., "final_answer": ...}``."""
    try:
        value = json.loads(body, strict=False)  # raw newlines inside strings are common in model output
    except json.JSONDecodeError:
        return ParsedExample(reject_reason=TRUNCATED if finish_reason == "length" else INVALID_JSON)
    if not isinstance(value, dict):
        return ParsedExample(reject_reason=INVALID_JSON)
    question, answer = _json_text(value.get("question")), _json_text(value.get("answer"))
    final_answer = _json_text(value.get("final_answer")) or _final_answer("", answer)
    return _example(question, answer, final_answer)


def _json_text(value: Any) -> str:
    """A JSON field as text: strings stripped, numbers written out (``18``, ``2.5``), anything else empty."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _kind(header: str) -> str:
    header = header.lower()
    return "final" if "final" in header else header


def _first_example(text: str) -> tuple[dict[str, str], bool]:
    """The sections (kind -> stripped text, first of each kind) of the first example, and whether another example
    follows it (so the first one ended before any truncation)."""
    matches = list(_HEADER.finditer(text))
    sections: list[tuple[str, str]] = []
    for match, following in zip(matches, [*matches[1:], None]):
        end = following.start() if following is not None else len(text)
        body = (match["rest"] + text[match.end() : end]).strip()
        sections.append((_kind(match["kind"]), body))
    # An empty "### Question" directly followed by another one (a prefill the teacher repeated) is not an example.
    sections = [
        (kind, body)
        for i, (kind, body) in enumerate(sections)
        if not (kind == "question" and not body and i + 1 < len(sections) and sections[i + 1][0] == "question")
    ]
    kinds = [kind for kind, _ in sections]
    if "question" in kinds:  # text before the first question (a preamble) is not part of the example
        sections = sections[kinds.index("question") :]
    found: dict[str, str] = {}
    for kind, body in sections:
        if kind == "question" and found and set(found) != {"question"}:
            return found, True  # the second example starts here
        found.setdefault(kind, body)
    return found, False


def _cut_prompt_echo(section: str) -> str:
    """The section up to the first line where the teacher echoes a label of the generation prompt."""
    echo = _PROMPT_ECHO.search(section)
    return (section[: echo.start()] if echo else section).strip()


def _close_at_gsm8k_line(answer: str) -> tuple[str, bool]:
    """Cut the answer after its first ``#### N`` line (a GSM8K solution ends there; small teachers often ramble on).
    Returns the answer and whether that line was finished (text followed it), i.e. the example is complete."""
    match = _GSM8K_FINAL.search(answer)
    if match is None:
        return answer, False
    return answer[: match.end()].strip(), bool(answer[match.end() :].strip())


def _final_answer(section: str, answer: str) -> str:
    """The first line of the final-answer section, or the last ``#### N`` line of the answer (GSM8K style)."""
    for line in section.splitlines():
        value = line.strip().strip("#*").strip()
        if value:
            return value
    gsm8k = _GSM8K_FINAL.findall(answer)
    return gsm8k[-1].strip() if gsm8k else ""
