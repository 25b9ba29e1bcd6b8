"""The ``embedsdg`` console script. ``--help`` is instant: heavy imports happen inside the commands."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .common.redact import redact_text

_RUN_HELP = """Run the EmbedSDG pipeline. With no --config: the embedded default (built-in SmolLM2-135M student,
built-in word-problem pool). Any recipe key can be overridden as a flag, e.g. --n_pairs 64 --reducer svd.
Run `embedsdg run --config recipes/gsm8k-cpu/pipeline.yaml` for a recipe."""


def _parse_config(command: str, rest: list[str], description: str):
    """The recipe from ``--config`` + flag overrides, or None after printing why it is invalid."""
    from trl import TrlParser

    from .config import PipelineConfig

    class _OneLineParser(TrlParser):
        def error(self, message: str):  # a bad flag (e.g. a value not among an option's choices): one line, rc 2
            raise ValueError(message)

    _check_config_file(rest)
    parser = _OneLineParser((PipelineConfig,), prog=f"embedsdg {command}", description=description)
    try:
        (config,) = parser.parse_args_and_config(rest)
    except ValueError as err:  # unknown recipe keys, bad values from __post_init__
        print(f"embedsdg {command}: error: {err}", file=sys.stderr)
        return None
    from .common.recipes import resolve_recipe_paths

    return resolve_recipe_paths(config, rest)  # a recipe's relative paths are relative to its own folder


def _check_config_file(args: list[str]) -> None:
    """``--config FILE``: a readable YAML mapping, or one ``ValueError`` line naming the file and what is wrong."""
    import yaml

    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            name = args[index + 1]
        elif arg.startswith("--config="):
            name = arg.split("=", 1)[1]
        else:
            continue
        path = Path(name).expanduser()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise ValueError(
                f"--config {name!r} {what}; give a recipe YAML file (e.g. recipes/default/pipeline.yaml)."
            )
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            where = getattr(err, "problem_mark", None)
            line = f" line {where.line + 1}" if where is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"--config {name!r}{line} is not valid YAML ({problem}).") from None
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"--config {name!r} must be a YAML mapping of recipe keys, got a {type(data).__name__}.")


#: Exit codes of ``embedsdg run``: 0 done, 1 the run failed (no usable result; finished work kept), 2 bad input or
#: refused output dir, 3 the teacher failed, 130 interrupted (Ctrl-C).
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _cmd_run(rest: list[str], verbose: bool = False) -> int:
    from .pipeline import RunFailedError, run_pipeline
    from .report import format_summary

    config = _parse_config("run", rest, _RUN_HELP)
    if config is None:
        return 2
    from .common.progress import quiet_progress
    from .generation.teachers import TeacherError
    from .validate import format_checks, validate_config

    user_errors = _user_errors()
    resume = f"rerun the same command to resume (finished work in {config.output_dir}/ is reused)."
    try:
        with quiet_progress():
            failed = [check for check in validate_config(config) if not check.ok]  # cheap checks before expensive work
        if failed:
            print(format_checks(failed))
            print("embedsdg run: error: the recipe failed the checks above; nothing was run.", file=sys.stderr)
            return 2
        manifest = run_pipeline(config)
    except user_errors as err:  # bad input: one clear line
        if verbose:
            raise
        print(f"embedsdg run: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except TeacherError as err:  # finished requests are in the cache: the same command resumes
        if verbose:
            raise
        print(
            f"embedsdg run: teacher failed: {redact_text(str(err))}\nFinished requests are saved in "
            f"{config.output_dir}/cache; rerun the same command to resume.",
            file=sys.stderr,
        )
        return 3
    except RunFailedError as err:
        if verbose:
            raise
        if err.manifest is not None:
            print(redact_text(format_summary(err.manifest)))
        print(f"embedsdg run: failed: {redact_text(str(err))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nembedsdg run: interrupted; {resume}", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno not in _DISK_ERRNOS or verbose:
            raise
        where = err.filename or config.output_dir
        print(
            f"embedsdg run: error: {os.strerror(err.errno)} writing {where}; finished work is kept. Free space, then "
            f"{resume}",
            file=sys.stderr,
        )
        return 1
    print(redact_text(format_summary(manifest)))
    if config.push_to_hub:
        from .hub import push_run_to_hub

        try:
            url = push_run_to_hub(config.output_dir, config.push_to_hub, private=config.hub_private)
        except (RuntimeError, ValueError) as err:
            print(f"embedsdg run: push failed: {err}", file=sys.stderr)
            return 1
        print(f"Pushed to {url}")
    print(f"\nWrote {config.output_dir}/ ({', '.join(sorted(p.name for p in Path(config.output_dir).iterdir()))}).")
    return 0


def _cmd_validate(rest: list[str], verbose: bool = False) -> int:
    from .validate import format_checks, validate_config

    config = _parse_config("validate", rest, "Check a recipe without generating anything.")
    if config is None:
        return 2
    checks = validate_config(config)
    print(format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1


def _cmd_train(rest: list[str], verbose: bool = False) -> int:
    from .training.train import run_train

    _check_config_file(rest)
    return run_train(rest, prog="embedsdg train")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.evaluate import run_evaluate

    return run_evaluate(args)


def _cmd_analyze(args: argparse.Namespace) -> int:
    import json

    from datasets import load_from_disk

    from .analysis.density import density_vs_accuracy
    from .data.seed_pools import load_seed_pool
    from .plots import plot_density_accuracy

    try:
        settings = _analyze_settings(args)
        predictions = Path(args.predictions)
        if not (predictions / "dataset_info.json").is_file():
            what = "does not exist" if not predictions.exists() else "is not a saved dataset folder"
            raise FileNotFoundError(
                f"--predictions {args.predictions!r} {what}; give the predictions/ folder `embedsdg evaluate` wrote."
            )
        scored = load_from_disk(args.predictions)
        if args.eval_data:
            scored = _join_eval_data(scored, args.eval_data)
        if settings["run_dir"] is not None:
            from .run.rundir import RunDir
            from .space.reduce import Reducer

            run = RunDir(settings["run_dir"])
            pool = load_from_disk(str(run.pool))  # embedded and reduced by the run
            reducer = Reducer.load(run.reducer)
        else:
            pool, reducer = load_seed_pool(args.pool, n=args.pool_size), None
        regions, stats = density_vs_accuracy(
            pool,
            scored,
            model=settings["model"],
            text_template=settings["text_template"],
            scored_template=settings["scored_template"],
            weights=settings["weights"],
            max_length=settings["max_length"],
            reducer=reducer,
            bins=args.bins,
            min_examples=args.min_examples,
        )
    except (ValueError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"embedsdg analyze: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    regions.to_csv(str(out / "regions.csv"))
    stats["space"] = {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    plot_density_accuracy(regions, stats, out / "density_accuracy.png")
    print(json.dumps(stats, indent=2))
    print(f"Wrote {out}/ (regions.csv, stats.json, density_accuracy.png)")
    return 0


def _analyze_settings(args: argparse.Namespace) -> dict:
    """Student, templates, weights and reducer of ``analyze``: a run dir's (the space its regions were found in),
    or the flags'."""
    from .run.rundir import RunDir

    if args.run_dir is None:
        if not args.model or not args.pool:
            raise ValueError(
                "give --run-dir (reuse a run's student, template, weights and reducer) or --model and --pool."
            )
        template = args.text_template or "{question}"
        return {
            "run_dir": None,
            "model": args.model,
            "text_template": template,
            "scored_template": args.scored_template or template,
            "weights": "mean",
            "max_length": None,
        }
    run = RunDir(args.run_dir)
    config = run.config()
    if config.method != "embedsdg":
        raise ValueError(f"{str(run.path)!r} is a {config.method!r} run: it has no reducer; give an EmbedSDG run.")
    for flag, value in (("--model", args.model), ("--pool", args.pool), ("--text-template", args.text_template)):
        if value:
            raise ValueError(f"{flag} comes from --run-dir ({run.config_file}); do not give both.")
    embedding = run.embedding()
    return {
        "run_dir": run.path,
        **embedding.kwargs(),
        "scored_template": args.scored_template or embedding.text_template,
    }


def _join_eval_data(scored, eval_data: str):
    """The predictions with the evaluation rows' other columns (e.g. the worked ``answer``), matched by question."""
    from .data.seed_pools import load_seed_pool

    rows = load_seed_pool(eval_data)
    if "question" not in rows.column_names or "question" not in scored.column_names:
        raise ValueError(f"--eval-data {eval_data!r} and the predictions must both have a 'question' column.")
    extra = [c for c in rows.column_names if c not in scored.column_names]
    by_question = {row["question"]: row for row in rows.select_columns(["question", *extra])}
    missing = [q for q in scored["question"] if q not in by_question]
    if missing:
        raise ValueError(
            f"{len(missing)} predicted question(s) are not in --eval-data {eval_data!r} (first: {missing[0][:80]!r})."
        )
    for column in extra:
        scored = scored.add_column(column, [by_question[q][column] for q in scored["question"]])
    return scored


def _cmd_coverage(args: argparse.Namespace) -> int:
    compare = {}
    for item in args.compare:
        name, sep, run_dir = item.partition("=")
        if not sep or not name or not run_dir:
            print(
                f"embedsdg coverage: error: --compare takes NAME=RUN_DIR (e.g. random=outputs/random), got {item!r}.",
                file=sys.stderr,
            )
            return 2
        if name in compare:
            print(f"embedsdg coverage: error: --compare names {name!r} twice.", file=sys.stderr)
            return 2
        compare[name] = run_dir
    from .run.coverage import coverage_from_run

    try:
        report = coverage_from_run(args.run_dir, compare=compare, output_dir=args.output_dir)
    except (ValueError, FileNotFoundError) as err:  # bad input: a clear message, no traceback
        if args.verbose:
            raise
        print(f"embedsdg coverage: error: {err}", file=sys.stderr)
        return 2
    print(report.to_markdown())
    print(f"\nWrote {args.output_dir or args.run_dir}/ (coverage.json, coverage.md, coverage.png)")
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from .experiments.ablation import format_table, run_ablation

    config = _parse_config("ablation", ["--config", args.config], "EmbedSDG vs RandomSDG")
    if config is None:
        return 2
    rows = run_ablation(
        config,
        budgets=args.budgets,
        sft_config=args.sft_config,
        output_dir=args.output_dir,
        eval_data=args.eval_data,
        eval_limit=args.eval_limit or None,
        eval_batch_size=args.eval_batch_size,
        max_new_tokens=args.max_new_tokens,
        sft_overrides=shlex.split(args.sft_overrides),
    )
    print(format_table(rows, student=config.student, eval_data=args.eval_data, limit=args.eval_limit or None))
    return 0


def _cmd_testbed(args: argparse.Namespace) -> int:
    """Targeting (seconds per pattern) and, unless --quick or --part targeting, the training half (about an hour)."""
    part = args.part if args.part == "selection" else "targeting" if args.quick else args.part
    try:
        if part == "selection":
            return _testbed_selection(args)
        if part in ("targeting", "all"):
            _testbed_targeting(args)
        if part in ("training", "all"):
            return _testbed_training(args)
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. Finished steps are kept in {args.output_dir}; the same command resumes there.",
            file=sys.stderr,
        )
        return 130
    return 0


def _check_counts(*checks: tuple[str, int, int]) -> None:
    """``(flag, value, minimum)``: a value below its minimum is a ValueError naming the flag as the user typed it
    (``main`` prints it as one line and exits 2); the library's own checks name their arguments instead."""
    for flag, value, minimum in checks:
        if value < minimum:
            raise ValueError(f"{flag} must be an integer >= {minimum}; got {value}.")


def _testbed_targeting(args: argparse.Namespace) -> None:
    from .experiments.testbed import PATTERNS, QUICK_PATTERNS, run_targeting

    _check_counts(("--n", args.n, 1), ("--n-pairs", args.n_pairs, 1))

    patterns = args.patterns or (list(QUICK_PATTERNS) if args.quick else [p.name for p in PATTERNS])
    weights = args.weights or ["mean", "mask"]
    print(f"Targeting testbed: patterns {patterns}, weights {weights}, reducers {args.reducers} -> {args.output_dir}")
    report = run_targeting(
        args.output_dir,
        patterns=patterns,
        weights=weights,
        reducers=args.reducers,
        n=args.n,
        n_pairs=args.n_pairs,
        slow_reducer_patterns=1 if args.quick else 2,
        slow_reducer_weights=weights[:1] if args.quick else None,
        progress=print,
    )
    print((Path(args.output_dir) / "testbed.md").read_text().split("## Lift by setting, every reducer")[0])
    print(f"Wrote {args.output_dir}/testbed.md, testbed.json and {len(report['figures'])} figures.")


def _testbed_selection(args: argparse.Namespace) -> int:
    from .experiments.selection_bench import run_selection_bench

    _check_counts(("--n-pairs", args.n_pairs, 1), ("--pool-seed", args.pool_seed, 0))
    print(f"Selection benchmark{' (quick)' if args.quick else ''} -> {args.output_dir}")
    try:
        run_selection_bench(
            args.output_dir, quick=args.quick, n_pairs=args.n_pairs, pool_seed=args.pool_seed, progress=print
        )
    except ValueError as err:
        print(f"embedsdg testbed: error: {err}", file=sys.stderr)
        return 2
    print((Path(args.output_dir) / "selection.md").read_text())
    print(f"Wrote {args.output_dir}/selection.md and selection.json.")
    return 0


def _testbed_training(args: argparse.Namespace) -> int:
    from .experiments.student_testbed import StudentPlan, run_student_testbed

    try:
        plan = StudentPlan(
            pattern=args.train_pattern,
            n=args.train_rows,
            test_per_family=args.test_per_family,
            accuracy_per_family=args.accuracy_per_family,
            budgets=tuple(args.budgets),
            seeds=tuple(args.seeds),
            dtype=args.dtype,
            llm_teacher=None if args.llm_teacher.lower() == "none" else args.llm_teacher,
        )
    except ValueError as err:
        print(f"embedsdg testbed: error: {err}", file=sys.stderr)
        return 2
    print(
        f"Training half: pattern {plan.pattern} (rare: {', '.join(plan.rare)}), SM on {plan.n} rows, budgets "
        f"{list(plan.budgets)} x seeds {list(plan.seeds)} x (EmbedSDG, RandomSDG) -> {args.output_dir}/training"
    )
    try:
        run_student_testbed(args.output_dir, plan, progress=print)
    except FileExistsError as err:
        print(f"embedsdg testbed: error: {err}", file=sys.stderr)
        return 2
    text = (Path(args.output_dir) / "training" / "training.md").read_text()
    print(text)
    print(f"Wrote {args.output_dir}/training/training.md, training.json and the figures there.")
    return 0


def _cmd_make_pool(args: argparse.Namespace) -> int:
    from .data.word_problems import make_word_problems

    if args.n < 1:
        raise ValueError(f"--n must be >= 1 (problems to write), got {args.n}.")
    if Path(args.output).is_dir():
        raise ValueError(f"--output {args.output!r} is a folder; give a file name, e.g. {args.output}/pool.jsonl.")
    ds = make_word_problems(args.n, seed=args.seed)
    ds.to_json(args.output)
    print(f"Wrote {len(ds)} word problems to {args.output}")
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from .common.recipes import RECIPES_DIR, copy_recipes, list_recipes

    if args.action == "list":
        print(f"Recipes shipped in {RECIPES_DIR}:")
        for name in list_recipes():
            print(f"  {name}")
        print("Copy them next to your work with `embedsdg recipes copy [NAME] --to DIR`.")
        return 0
    try:
        written = copy_recipes(args.to, args.name, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as err:
        print(f"embedsdg recipes copy: {err}", file=sys.stderr)
        return 2
    print(f"Copied {len(written)} file(s) into {args.to}/ (e.g. {written[0]}).")
    return 0


def _cmd_env(_: argparse.Namespace) -> int:
    from .common.versions import library_versions

    for name, value in library_versions().items():
        print(f"- {name}: {value}")
    return 0


class _OneLineArgumentParser(argparse.ArgumentParser):
    """A bad flag of an argparse command (``testbed``, ``coverage``, ...) is one line and exit code 2, as for ``run``:
    the message goes to :func:`main` as a ``ValueError`` instead of argparse's usage block."""

    def error(self, message: str):
        raise ValueError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineArgumentParser(prog="embedsdg", description="EmbedSDG: targeted synthetic data generation.")
    parser.add_argument("--version", action="version", version=f"embedsdg-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineArgumentParser)
    # run / validate / train: their flags are a dataclass config (TrlParser), listed here for the top-level help only
    sub.add_parser(
        "validate",
        help="Check a recipe (columns, templates, student, teacher reachable) without generating.",
        add_help=False,
    )
    sub.add_parser(
        "run", help="Run the pipeline (recipe via --config; `embedsdg run --help` lists every key).", add_help=False
    )
    sub.add_parser("train", help="LoRA fine-tune the student (TRL SFT; `embedsdg train --help`).", add_help=False)
    from .training.evaluate import add_evaluate_arguments

    evaluate = sub.add_parser("evaluate", help="Accuracy on GSM8K / MATH / a file, with an optional adapter.")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(handler=_cmd_evaluate)
    analyze = sub.add_parser("analyze", help="Density vs accuracy: per-region pool count vs the student's accuracy.")
    analyze.set_defaults(handler=_cmd_analyze)
    analyze.add_argument(
        "--run-dir",
        default=None,
        help="An `embedsdg run` dir: reuse its pool, student, template, weights and reducer (the space its regions "
        "were found in). Give --eval-data too when the template needs the worked answer.",
    )
    analyze.add_argument("--model", default=None, help="Student spec (without --run-dir).")
    analyze.add_argument("--pool", default=None, help="Training pool: file, Hub id or 'word-problems' (no --run-dir).")
    analyze.add_argument("--pool-size", type=int, default=None)
    analyze.add_argument("--predictions", required=True, help="`embedsdg evaluate`'s predictions/ folder.")
    analyze.add_argument(
        "--eval-data",
        default=None,
        help="The evaluated rows (e.g. gsm8k test.jsonl): their other columns (the worked answer) are joined to the "
        "predictions by question, so test examples are embedded like the pool.",
    )
    # Without --run-dir, questions only by default: the predictions hold the reference *final answer*, not a worked
    # solution, so embedding "question + answer" would put pool and test examples in different places.
    analyze.add_argument("--text-template", default=None, help="Pool text (default: the run's, else the question).")
    analyze.add_argument("--scored-template", default=None, help="Scored text (default: the pool's template).")
    analyze.add_argument("--bins", type=int, default=6)
    analyze.add_argument("--min-examples", type=int, default=5)
    analyze.add_argument("--output-dir", default="outputs/analyze")
    coverage = sub.add_parser(
        "coverage", help="Did the kept rows fill the sparse regions (grid windows or k-NN balls)? Before/after."
    )
    coverage.set_defaults(handler=_cmd_coverage)
    coverage.add_argument("run_dir", metavar="RUN_DIR", help="An `embedsdg run` output dir (EmbedSDG method).")
    coverage.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="Another run to compare (same student and template), e.g. random=outputs/random-500; repeatable.",
    )
    coverage.add_argument("--output-dir", default=None, help="Where coverage.json/.md/.png go (default: RUN_DIR).")
    ablation = sub.add_parser("ablation", help="EmbedSDG vs RandomSDG per budget: generate, fine-tune, evaluate.")
    ablation.set_defaults(handler=_cmd_ablation)
    ablation.add_argument("--config", required=True, help="Pipeline recipe.")
    ablation.add_argument("--sft-config", required=True, help="SFT recipe (recipes/<name>/sft/lora.yaml).")
    ablation.add_argument("--budgets", type=int, nargs="+", required=True)
    ablation.add_argument("--eval-data", default="gsm8k-test")
    ablation.add_argument("--eval-limit", type=int, default=100, help="First N evaluation rows (0: all).")
    ablation.add_argument("--eval-batch-size", type=int, default=32)
    ablation.add_argument("--max-new-tokens", type=int, default=256)
    ablation.add_argument("--sft-overrides", default="", help='Extra SFT recipe flags, quoted: "--max_length 384".')
    ablation.add_argument("--output-dir", default="outputs/ablation")
    testbed = sub.add_parser(
        "testbed", help="Targeting testbed: planted rare families; where EmbedSDG's and RandomSDG's seeds come from."
    )
    testbed.set_defaults(handler=_cmd_testbed)
    testbed.add_argument("--quick", action="store_true", help="Three held-out patterns, targeting only (~1-2 min).")
    testbed.add_argument("--patterns", nargs="+", default=None, help="Pattern names (r4s0..r4s5, r2s0, r2s1).")
    testbed.add_argument("--weights", nargs="+", default=None, help="Token weights (default: mean mask).")
    testbed.add_argument("--reducers", nargs="+", default=["pca", "svd", "tsne", "umap"])
    testbed.add_argument("--n", type=int, default=2000, help="Pool size.")
    testbed.add_argument("--n-pairs", type=int, default=60, help="Seed pairs per selector.")
    testbed.add_argument(
        "--pool-seed", type=int, default=0, help="selection: which draw of every benchmark pool (default 0)."
    )
    testbed.add_argument("--output-dir", default="outputs/testbed")
    testbed.add_argument(
        "--part",
        choices=("all", "targeting", "training", "selection"),
        default="all",
        help="What to run (--quick: targeting). selection: the selection benchmark (4 sources, held out by source).",
    )
    training = testbed.add_argument_group("training half (a student fine-tuned on a pool with rare families)")
    training.add_argument("--train-pattern", default="r4s2", help="Pattern of D (default: a held-out one).")
    training.add_argument("--train-rows", type=int, default=1000, help="Rows of D, the student's training data.")
    training.add_argument("--test-per-family", type=int, default=10, help="Held-out problems per family.")
    training.add_argument("--accuracy-per-family", type=int, default=4, help="Of those, scored by generation.")
    training.add_argument("--budgets", type=int, nargs="+", default=[12, 24, 48], help="New examples per arm.")
    training.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    training.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="LoRA training dtype.")
    training.add_argument(
        "--llm-teacher", default="transformers:smollm2-135m-instruct", help="One row per method with it ('none')."
    )
    pool = sub.add_parser("make-pool", help="Write the built-in word-problem seed pool as JSONL.")
    pool.set_defaults(handler=_cmd_make_pool)
    pool.add_argument("--n", type=int, default=1000, help="Number of problems.")
    pool.add_argument("--seed", type=int, default=0)
    pool.add_argument("--output", default="word_problems.jsonl")
    sub.add_parser("env", help="Print the versions of the libraries in use (for bug reports).").set_defaults(
        handler=_cmd_env
    )
    recipes = sub.add_parser("recipes", help="List or copy the recipes that ship with the package.")
    recipes.set_defaults(handler=_cmd_recipes)
    recipes.add_argument("action", choices=("list", "copy"))
    recipes.add_argument(
        "name", nargs="?", default=None, help="copy: one folder or file, e.g. gsm8k-cpu (default: all of them)."
    )
    recipes.add_argument("--to", default="recipes", help="copy: destination folder (default: ./recipes).")
    recipes.add_argument("--overwrite", action="store_true", help="copy: replace files that exist.")
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can raise anywhere in a command: one line on stderr, exit code 2 (``-v``: traceback)."""
    from .common.jsonl_store import StoreBusyError
    from .common.rundir import RunDirLockedError

    return (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        RunDirLockedError,
        StoreBusyError,
    )


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line, secrets redacted."""
    return redact_text(" ".join(str(err).split()) or type(err).__name__)


def _dash_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with each ``--multi_word`` flag in the spelling the subcommand declares (``--multi-word``): every
    subcommand takes both forms, as ``run`` / ``validate`` / ``train`` do."""
    command = next((a for a in argv if not a.startswith("-")), None)
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None or command not in sub.choices:
        return argv
    known = set(sub.choices[command]._option_string_actions)
    fixed = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        if name.startswith("--") and name not in known:
            for other in (name[:2] + name[2:].replace("_", "-"), name[:2] + name[2:].replace("-", "_")):
                if other in known:
                    name = other
                    break
        fixed.append(name + sep + value)
    return fixed


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        return _main(argv)
    except _user_errors() as err:  # every command: bad input is one line naming what and what is allowed
        if "-v" in argv[: argv.index(command) if command in argv else len(argv)] or "--verbose" in argv:
            raise
        print(f"embedsdg {command or ''}: error: {_one_line(err)}".replace("  ", " "), file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in CONFIG_COMMANDS:  # everything after the command goes to its dataclass parser (TrlParser)
        index = argv.index(command)
        top = parser.parse_args(argv[:index])
        _configure_logging(top.verbose)
        return CONFIG_COMMANDS[command](argv[index + 1 :], verbose=top.verbose)
    args = parser.parse_args(_dash_flags(parser, argv))
    _configure_logging(args.verbose)
    handler = getattr(args, "handler", None)
    if handler is None:  # no subcommand
        parser.print_help()
        return 0
    return handler(args)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


#: Subcommands whose flags are a dataclass config parsed by TRL's ``TrlParser`` (recipe keys as flags, ``--config``
#: YAML, their own ``--help``); every other subcommand's handler is set on its argparse subparser.
CONFIG_COMMANDS: dict[str, Callable[..., int]] = {"run": _cmd_run, "validate": _cmd_validate, "train": _cmd_train}


if __name__ == "__main__":
    sys.exit(main())
