"""Prompt templates: the packaged P_g / P_b match the paper, fields, brace-safe rendering, user files, clear errors."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from embedsdg_hf.generation.prompts import PromptTemplate, available_prompts, load_prompt

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "embedsdg-arxiv-2603.22294.txt"


def _paper_listing(number: int) -> str:
    """The text of a listing in the paper: the lines after its title, up to its last line "Generated example:"."""
    if not PAPER.exists():
        pytest.skip(f"The paper text is not at {PAPER}.")
    lines = PAPER.read_text(encoding="utf-8").split("\n")
    title = re.compile(rf"Listing\s{number}:")  # the paper text has a no-break space there
    start = next(i for i, line in enumerate(lines) if title.match(line)) + 1
    end = next(i for i in range(start, len(lines)) if lines[i] == "Generated example:") + 1
    return "\n".join(lines[start:end])


@pytest.mark.parametrize(
    ("name", "listing", "fields"),
    [
        ("generate_embedsdg_v1", 2, ("q1", "a1", "q2", "a2", "interpolated_decoded_text")),
        ("generate_random_v1", 4, ("q1", "a1")),
    ],
)
def test_packaged_generation_prompts_are_the_papers_listings(name, listing, fields):
    template = load_prompt(name)
    assert (template.name, template.version, template.tag) == (name, "v1", name)
    assert template.fields == fields
    assert template.text == _paper_listing(listing)
    assert template.text.startswith("You are a data generator for synthetic math reasoning problems.")
    assert template.text.endswith("Generated example:")  # the file's final newline is dropped


def test_available_prompts_lists_the_packaged_templates():
    assert {"generate_embedsdg_v1", "generate_random_v1"} <= set(available_prompts())


def test_render_keeps_braces_in_values_literal():
    template = load_prompt("generate_embedsdg_v1")
    values = {
        "q1": "Solve {x} + 2 = {a2}",
        "a1": r"$\frac{1}{2}$ #### {q2}",
        "q2": "Set {1, 2, 3}",
        "a2": "{interpolated_decoded_text}",
        "interpolated_decoded_text": "{} {0} {{q1}}",
    }
    text = template.render(**values)
    for value in values.values():
        assert value in text
    assert "{" + "q1" + "}" not in text.replace("{{q1}}", "")  # no placeholder left, none re-substituted


def test_render_names_missing_and_unknown_fields():
    template = load_prompt("generate_random_v1")
    with pytest.raises(ValueError, match=r"no value for \{a1\}.*fields are \{q1\}, \{a1\}"):
        template.render(q1="x")
    with pytest.raises(ValueError, match=r"\{q2\}, which it does not use"):
        template.render(q1="x", a1="y", q2="z")


def test_only_identifier_braces_are_fields():
    template = PromptTemplate(name="t_v1", version="v1", text='{Example 1} {"a": 1} {q1} {{x}} {q1}', source="-")
    assert template.fields == ("q1", "x")
    assert template.render(q1="Q", x="X") == '{Example 1} {"a": 1} Q {X} Q'


def test_user_template_file_version_is_name_and_hash(tmp_path):
    path = tmp_path / "my_prompt.txt"
    path.write_text("Seed:\n{q1}\n{a1}\nNew example:\n", encoding="utf-8")
    template = load_prompt(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert template.version == template.tag == f"file:my_prompt@{digest}"
    assert template.name == "my_prompt" and template.source == str(path.resolve())
    assert template.text == "Seed:\n{q1}\n{a1}\nNew example:"
    assert load_prompt(str(path)) == template
    path.write_text("Seed:\n{q1}\n{a1}\nAnother example:\n", encoding="utf-8")
    assert load_prompt(path).version != template.version


def test_user_template_lacking_a_required_field_fails_at_load(tmp_path):
    path = tmp_path / "half.txt"
    path.write_text("Only {q1} and {extra}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the field \{a1\}.*uses field \{extra\}"):
        load_prompt(path, required_fields=["q1", "a1"])
    with pytest.raises(ValueError, match=r"lacks the fields \{q2\}, \{a2\}"):
        load_prompt("generate_random_v1").validate(["q1", "a1", "q2", "a2"], purpose="method='embedsdg'")


def test_unknown_name_or_missing_file_lists_the_packaged_templates(tmp_path):
    with pytest.raises(ValueError, match="No packaged prompt template 'generate_nothing_v9'.*generate_random_v1"):
        load_prompt("generate_nothing_v9")
    with pytest.raises(ValueError, match="does not exist.*generate_embedsdg_v1"):
        load_prompt(tmp_path / "absent.txt")
