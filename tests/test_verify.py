"""Answer verification: the safe evaluator, the GSM8K/MATH checks on real GSM8K (and planted faults), the transform.

The real GSM8K train split is the yardstick: nearly all of it must pass, and the same rows with one annotation result
or the final answer changed must fail with the right reason (a gate that never fires is a defect).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from fractions import Fraction

import datasets
import pytest

from embedsdg_hf.quality.verify import (
    VERIFY_REASONS,
    add_verification,
    check_solution,
    count_reasons,
    evaluate_arithmetic,
    filter_verified,
)

ANNOTATION = re.compile(r"<<([^<>]*)=([^<>=]*)>>")
HASH_LINE = re.compile(r"\n?^#### [^\n]*$", re.MULTILINE)


def final_of(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip()


@pytest.fixture(scope="module")
def gsm8k_train(gsm8k_train_file) -> list[dict]:
    with open(gsm8k_train_file) as handle:
        return [json.loads(line) for line in handle]


# ------------------------------------------------------------------------------------------------------------------
# evaluate_arithmetic
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("48/2", 24),
        ("2*12+2*8", 40),
        ("7/2", Fraction(7, 2)),
        ("0.1+0.2", Fraction(3, 10)),  # exact: no float rounding
        (".5*4", 2),
        ("15*.01*1000", 150),
        ("1,000*2", 2000),
        ("12,345,678-1", 12345677),
        ("7//2", 3),
        ("7%3", 1),
        ("2**10", 1024),
        ("2**-2", Fraction(1, 4)),
        ("-(3-5)", 2),
        ("+4", 4),
        (" (1+2)*(3+4) ", 21),
        ("5-3", 2),
        ("(" * 99 + "1" + ")" * 99, 1),  # as deep as 200 characters allow
        ("-" * 199 + "1", -1),
    ],
)
def test_evaluate_arithmetic_values(expr, value):
    assert evaluate_arithmetic(expr) == value
    assert isinstance(evaluate_arithmetic(expr), Fraction)


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("__import__('os').system('x')", r"Call is not allowed"),
        ("a+b", r"Name is not allowed"),
        ("(1).real", r"Attribute is not allowed"),
        ("'a'*3", r"constant 'a' is not allowed"),
        ("1<2", r"Compare is not allowed"),
        ("[1][0]", r"is not allowed"),
        ("lambda: 1", r"Lambda is not allowed"),
        ("1,2", r"Tuple is not allowed"),
        ("1e5", r"literal '1e5'"),
        ("0x10", r"literal '0x10'"),
        ("1_000", r"literal '1_000'"),
        ("2j", r"constant 2j"),
        ("True+1", r"constant True"),
        ("3 4", r"Not an arithmetic expression"),
        ("", r"Empty"),
        ("1/0", r"Division by zero"),
        ("5//0", r"Division by zero"),
        ("5%0", r"Division by zero"),
        ("0**-1", r"Division by zero"),
        ("9**9**9", r"Exponent 387420489 refused"),
        ("2**0.5", r"Exponent 1/2 refused"),
        ("(2**64)**64", r"Power too large"),
        ("1" * 10_000, r"10000 characters refused"),
        ("(" * 150 + "1" + ")" * 150, r"301 characters refused"),
    ],
)
def test_evaluate_arithmetic_refuses(expr, match):
    with pytest.raises(ValueError, match=match):
        evaluate_arithmetic(expr)


def test_evaluate_arithmetic_bounds_every_value():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"too large"):
        evaluate_arithmetic("*".join(["(9**64)"] * 24))  # each power is fine; the product passes 4096 bits
    assert time.perf_counter() - start < 0.5


def test_evaluate_arithmetic_never_executes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for expr in ("__import__('os').system('touch pwned')", "open('pwned', 'w')", "exec('x=1')"):
        with pytest.raises(ValueError):
            evaluate_arithmetic(expr)
    assert not os.path.exists("pwned")


# ------------------------------------------------------------------------------------------------------------------
# check_solution: GSM8K rules
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "final", "reason"),
    [
        # The rounding rule: the result is the exact value rounded to the decimals it shows.
        ("Each gets 10/3=<<10/3=3.33>>3.33 kg.", "3.33", None),
        ("Each gets 10/3=<<10/3=3.3>>3.3 kg.", "3.3", None),
        ("Each gets 10/3=<<10/3=3.4>>3.4 kg.", "3.4", "bad_arithmetic"),
        ("So 2/3=<<2/3=0.66>>0.66 of it.", "0.66", "bad_arithmetic"),  # truncated, not rounded
        ("So 2/3=<<2/3=0.67>>0.67 of it.", "0.67", None),
        ("That is 7/2=<<7/2=4>>4 boxes.", "4", None),
        ("That is 7/2=<<7/2=5>>5 boxes.", "5", "bad_arithmetic"),
        ("It costs 6*0.10=<<6*0.10=0.60>>0.60 dollars.", "0.6", None),
        ("It costs 6*0.10=<<6*0.10=0.61>>0.61 dollars.", "0.61", "bad_arithmetic"),
        ("A fraction 3/4=<<3/4=3/4>>3/4 is left, so 3*4=<<3*4=12>>12.", "12", None),
        ("A fraction <<3/4=2/3>>2/3 is left, so 3*4=<<3*4=12>>12.", "12", "bad_arithmetic"),
        ("It costs 2*$5=$<<2*$5=$10>>10.", "$10.00", None),  # $ in the expression and final answer
        ("It is 1,000*2=<<1,000*2=2,000>>2,000 pens.", "2,000", None),
        ("She had <<-3+1=-2>>-2 degrees.", "-2", None),
        # Unparsable annotations are failures.
        ("Half of 48 is <<48/2>>24.", "24", "unparsable_annotation"),
        ("Half of 48 is <<48/2=twenty-four>>24.", "24", "unparsable_annotation"),
        ("Half of x is <<x/2=24>>24.", "24", "unparsable_annotation"),
        ("20% of 50 is <<20%*50=10>>10.", "10", "unparsable_annotation"),
        ("It is <<__import__('os').system('x')=0>>0.", "0", "unparsable_annotation"),
        ("It is <<9**9**9=1>>1.", "1", "unparsable_annotation"),
        ("It is <<1/0=0>>0.", "0", "unparsable_annotation"),
        ("It is <<a+b=3>>3.", "3", "unparsable_annotation"),
        # The final answer.
        ("She has 3+4=<<3+4=7>>7 pens.", "7 or 8 pens", "final_answer_not_numeric"),
        ("She has 3+4=<<3+4=7>>7 pens.", "", "final_answer_not_numeric"),
        ("She has 3+4=<<3+4=7>>7 pens.\n#### 7", "8", "final_answer_mismatch"),
        ("She has 3+4=<<3+4=7>>7 pens.\n#### 8", "8", "final_answer_mismatch"),  # the solution's result is 7
        ("She has 3+4=<<3+4=7>>7 pens.\n#### 7", "7.0", None),
        # The result is read from the end: last annotation, or a non-operand number of the last numbered line.
        ("She has <<3+4=7>>7 pens. Then she gets 2 more, 7+2 = 9.", "9", None),
        ("She has <<3+4=7>>7 pens. Then she gets 2 more, 7+2 = 9.", "7", None),  # the last annotation's result
        ("Leah lost 12 - 1 = $11.", "11", None),
        ("Leah lost 12 - 1 = $11.", "12", "final_answer_mismatch"),  # 12 is an operand
        ("He takes 5 x 2 = 10 bags in 3 days.", "3", None),
        ("He takes 5 x 2 = 10 bags in 3 days.", "5", "final_answer_mismatch"),
        ("She pays 3*6 = $18.\nThat is all.", "18", None),  # the last line without a number is skipped
        ("It costs $0.49/week", "0.49", None),  # "/week" is a unit, not a division
        ("No numbers here.", "4", "final_answer_mismatch"),
    ],
)
def test_check_solution_gsm8k(answer, final, reason):
    got, detail = check_solution(answer, final)
    assert got == reason, detail
    assert (detail is None) == (reason is None)


def test_check_solution_details_name_the_fault():
    reason, detail = check_solution("Each gets 10/3=<<10/3=3.4>>3.4 kg.", "3.4")
    assert reason == "bad_arithmetic" and "<<10/3=3.4>>" in detail and "3.333333 (10/3)" in detail
    reason, detail = check_solution("It is <<x+1=3>>3.", "3")
    assert reason == "unparsable_annotation" and "<<x+1=3>>" in detail and "Name is not allowed" in detail
    reason, detail = check_solution("He has 48 + 16 = <<48+16=64>>64 points.\n#### 66", "66")
    assert reason == "final_answer_mismatch" and "64" in detail and "66" in detail
    reason, detail = check_solution("huge " + "<<" + "1+" * 5000 + "1=2>>", "2")
    assert reason == "unparsable_annotation" and "characters refused" in detail and len(detail) < 400


@pytest.mark.parametrize(
    ("answer", "final", "reason"),
    [
        ("It is <<1=" + "1" * 5000 + ">>1.", "1", "unparsable_annotation"),
        ("It is 1.", "1" * 5000, "final_answer_not_numeric"),  # over Python's 4300-digit int-to-str limit
        ("It is 1.\n#### " + "9" * 5000, "1", "final_answer_mismatch"),
        ("It is " + "9" * 5000 + ".", "1", "final_answer_mismatch"),
        ("<<2**40*3**20/7**5=1>>", "1", "bad_arithmetic"),  # shown as 2.281050e+17, no float overflow
        ("x " * 20_000 + "<<2+2=4>>4", "4", None),
    ],
)
def test_check_solution_never_crashes_on_huge_input(answer, final, reason):
    start = time.perf_counter()
    got, detail = check_solution(answer, final)
    assert got == reason and (detail is None or len(detail) < 400), detail
    assert time.perf_counter() - start < 1


def test_check_solution_math():
    assert check_solution("So $x = \\boxed{\\frac{1}{2}}$.", "0.5", kind="math") == (None, None)
    assert check_solution("First \\boxed{3}, then \\boxed{4}.", "4", kind="math") == (None, None)
    assert check_solution("It is \\boxed{4}.", "\\boxed{4}", kind="math") == (None, None)  # a boxed final answer
    assert check_solution("It is 4.", "4", kind="math")[0] == "missing_boxed"
    assert check_solution("It is \\boxed{4", "4", kind="math")[0] == "missing_boxed"  # truncated box
    reason, detail = check_solution("It is \\boxed{5}.", "4", kind="math")
    assert reason == "boxed_mismatch" and "'5'" in detail and "'4'" in detail
    reason, detail = check_solution("\\boxed{" + "9" * 5000 + "}", "1", kind="math")  # no crash, short detail
    assert reason == "boxed_mismatch" and len(detail) < 400
    # Equivalences only math-verify finds: an interval with its variable, a set in another order, a choice letter
    assert check_solution("So $x \\in \\boxed{[1,3)}$.", "x \\in [1,3)", kind="math") == (None, None)
    assert check_solution("The roots: \\boxed{\\{2,1\\}}", "\\{1,2\\}", kind="math") == (None, None)
    assert check_solution("Answer: \\boxed{\\text{(B)}}", "B", kind="math") == (None, None)
    assert check_solution("The roots: \\boxed{\\{2,3\\}}", "\\{1,2\\}", kind="math")[0] == "boxed_mismatch"
    assert check_solution("So \\boxed{(1,3)}", "[1,3)", kind="math")[0] == "boxed_mismatch"


def test_check_solution_handles_missing_values_and_bad_kind():
    assert check_solution(None, None)[0] == "final_answer_not_numeric"
    assert check_solution(None, "3")[0] == "final_answer_mismatch"
    assert check_solution(None, None, kind="math")[0] == "missing_boxed"
    assert check_solution("so 3+4=<<3+4=7>>7", 7) == (None, None)  # a numeric column is read as text
    with pytest.raises(ValueError, match=r"Unknown kind 'gsm'; allowed: 'gsm8k', 'math'"):
        check_solution("x", "1", kind="gsm")


def test_reasons_are_a_fixed_vocabulary():
    assert VERIFY_REASONS == (
        "final_answer_not_numeric",
        "unparsable_annotation",
        "bad_arithmetic",
        "final_answer_mismatch",
        "missing_boxed",
        "boxed_mismatch",
    )


# ------------------------------------------------------------------------------------------------------------------
# Real GSM8K train: it passes, and planted faults fire
# ------------------------------------------------------------------------------------------------------------------


def test_real_gsm8k_train_passes(gsm8k_train):
    assert len(gsm8k_train) == 7473
    reasons = Counter(check_solution(row["answer"], final_of(row["answer"]))[0] for row in gsm8k_train)
    # Measured: 7453 pass (99.73%). The 20 failures are real faults of GSM8K: final answers the solution never
    # reaches, dollars in the solution but cents in "#### N", numbers written "100 000". No annotation is wrong.
    assert reasons[None] >= 7450, reasons
    assert set(reasons) == {None, "final_answer_mismatch"}, reasons
    for index in (356, 786, 2770, 4796):  # e.g. "48 + 16 = <<48+16=64>>64 points.\n#### 66"
        assert check_solution(gsm8k_train[index]["answer"], final_of(gsm8k_train[index]["answer"]))[0] == (
            "final_answer_mismatch"
        )


def _passing(rows: list[dict]) -> list[dict]:
    return [row for row in rows if check_solution(row["answer"], final_of(row["answer"]))[0] is None]


def test_a_changed_annotation_result_fails(gsm8k_train):
    rows = [row for row in _passing(gsm8k_train) if ANNOTATION.search(row["answer"])]
    assert len(rows) > 7300
    for row in rows:
        answer = row["answer"]
        matches = list(ANNOTATION.finditer(answer))
        match = matches[len(matches) // 2]
        wrong = Fraction(match.group(2).replace(",", "")) + 1
        planted = (
            answer[: match.start(2)] + str(float(wrong) if wrong.denominator > 1 else wrong) + answer[match.end(2) :]
        )
        reason, detail = check_solution(planted, final_of(answer))
        assert reason == "bad_arithmetic", (planted, detail)


def test_a_changed_final_answer_fails(gsm8k_train):
    rows = _passing(gsm8k_train)
    leaks = 0
    for row in rows:
        wrong = str(Fraction(final_of(row["answer"]).replace(",", "")) + 1)
        wrong = str(float(Fraction(wrong))) if "/" in wrong else wrong
        # With the "#### N" line: it contradicts the planted final answer.
        assert check_solution(row["answer"], wrong)[0] == "final_answer_mismatch"
        # Without it, only the solution's result can catch the planted answer.
        leaks += check_solution(HASH_LINE.sub("", row["answer"]), wrong)[0] is None
    # Measured: 24 of 7453 leak (the wrong answer is another result stated on the last line, e.g. "... in 5 days").
    assert leaks <= 0.005 * len(rows), leaks


# ------------------------------------------------------------------------------------------------------------------
# add_verification: the transform contract
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def on_disk(gsm8k_rows, tmp_path) -> datasets.Dataset:
    """60 real GSM8K rows (with a final_answer column, two planted faults) as an on-disk, cache-backed Dataset."""
    rows = [{**row, "final_answer": final_of(row["answer"])} for row in gsm8k_rows[:60]]
    rows[3]["final_answer"] = "-1"
    rows[7]["answer"] = rows[7]["answer"].replace("<<", "<<1+", 1)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return datasets.load_dataset("json", data_files=str(path), split="train")


def test_add_verification_columns(on_disk):
    out = add_verification(on_disk)
    assert out.column_names == [*on_disk.column_names, "verify_reason", "verify_detail"]
    assert out.features["verify_reason"] == out.features["verify_detail"] == datasets.Value("string")
    rows = out.to_list()
    for row in rows:
        assert (row["verify_reason"], row["verify_detail"]) == check_solution(row["answer"], row["final_answer"])
    assert rows[3]["verify_reason"] == "final_answer_mismatch" and rows[7]["verify_reason"] == "bad_arithmetic"
    assert count_reasons(out) == dict(sorted(Counter(r["verify_reason"] for r in rows if r["verify_reason"]).items()))
    kept = out.filter(filter_verified)
    assert len(kept) == len(out) - sum(count_reasons(out).values()) and len(kept) >= 55


def test_add_verification_contract(on_disk):
    first = add_verification(on_disk)
    cache_file = first.cache_files[0]["filename"]
    stamp = os.stat(cache_file).st_mtime_ns
    second = add_verification(on_disk)
    assert second._fingerprint == first._fingerprint and second.cache_files[0]["filename"] == cache_file
    assert os.stat(cache_file).st_mtime_ns == stamp, "the second call recomputed instead of reusing the cache"
    assert add_verification(on_disk, kind="math")._fingerprint != first._fingerprint
    assert add_verification(on_disk, detail_column="why")._fingerprint != first._fingerprint
    parallel = add_verification(on_disk, num_proc=2, load_from_cache_file=False)
    assert parallel["verify_reason"][:] == first["verify_reason"][:]
    assert parallel["verify_detail"][:] == first["verify_detail"][:]
    for column in on_disk.column_names:  # input columns untouched
        assert first.features[column] == on_disk.features[column]
        assert first.with_format("arrow")[column].equals(on_disk.with_format("arrow")[column]), column


def test_add_verification_custom_columns_and_math():
    ds = datasets.Dataset.from_dict(
        {"solution": ["so \\boxed{\\dfrac12}", "so \\boxed{3}", "no box"], "target": ["0.5", "4", "1"]}
    )
    out = add_verification(
        ds, kind="math", answer_column="solution", final_column="target", reason_column="r", detail_column="d"
    )
    assert out["r"][:] == [None, "boxed_mismatch", "missing_boxed"]
    assert count_reasons(out, "r") == {"boxed_mismatch": 1, "missing_boxed": 1}


def test_add_verification_errors(on_disk):
    broken = on_disk.remove_columns("final_answer")
    with pytest.raises(ValueError, match=r"no column 'final_answer'.*Columns present: \[") as err:
        add_verification(broken)
    assert str(broken.column_names) in str(err.value)
    with pytest.raises(ValueError, match=r"Unknown kind 'MATH'"):
        add_verification(on_disk, kind="MATH")
    with pytest.raises(ValueError, match=r"sets 'batched' itself"):
        add_verification(on_disk, batched=False)
    with pytest.raises(ValueError, match=r"no column 'verify_reason'"):
        count_reasons(on_disk)


def test_add_verification_empty_and_replaced_columns(caplog):
    empty = datasets.Dataset.from_dict({"answer": [], "final_answer": []})
    out = add_verification(empty)
    assert len(out) == 0 and out.column_names == ["answer", "final_answer", "verify_reason", "verify_detail"]
    assert count_reasons(out) == {}
    ds = datasets.Dataset.from_dict({"answer": ["<<1+1=3>>3"], "final_answer": ["3"], "verify_reason": ["old"]})
    with caplog.at_level(logging.WARNING, logger="embedsdg_hf.quality.verify"):
        out = add_verification(ds)
    assert "already exist" in caplog.text
    assert out["verify_reason"][:] == ["bad_arithmetic"]


def test_the_shipped_seed_pool_passes():
    from embedsdg_hf.data.word_problems import make_word_problems

    assert count_reasons(add_verification(make_word_problems(500, seed=0))) == {}
