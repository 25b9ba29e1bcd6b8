"""LoRA SFT (embedsdg_hf.training.train): recipes, accelerate configs, data loading and validation, loss mask, CPU
smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from _eval import one_torch_thread
from _runs import write_run_dir

from embedsdg_hf.training.train import (
    ACCELERATE_CONFIGS,
    build_train_parser,
    build_trainer,
    load_training_data,
    resolve_accelerate_config,
    run_train,
)

REPO = Path(__file__).resolve().parents[1]
SFT_RECIPES = sorted(REPO.glob("recipes/**/sft/*.yaml"))
CPU_RECIPE = REPO / "recipes" / "gsm8k-cpu" / "sft" / "lora.yaml"
END_OF_TURN = "<|im_end|>\n"  # SmolLM2's chat template closes every turn with this


def _messages(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def sft_rows(gsm8k_rows) -> list[dict]:
    """16 real GSM8K train rows as TRL conversational rows."""
    return [{"messages": _messages(row["question"], row["answer"])} for row in gsm8k_rows[:16]]


def _parse_recipe(path: Path, *extra: str):
    """Parse a recipe with the training script's own parser; GPU recipes get bf16 off on a machine without CUDA."""
    import torch

    overrides = []
    if yaml.safe_load(path.read_text()).get("bf16") and not torch.cuda.is_available():
        overrides = ["--bf16", "false", "--use_cpu", "true"]
    return build_train_parser().parse_args_and_config(["--config", str(path), *overrides, *extra])


# Recipes and accelerate configs


def test_all_sft_recipes_are_found():
    names = {str(p.relative_to(REPO)) for p in SFT_RECIPES}
    assert {
        "recipes/gsm8k-cpu/sft/lora.yaml",
        "recipes/paper-metamath/sft/lora.yaml",
        "recipes/paper-metamath/sft/qlora.yaml",
    } <= names


@pytest.mark.parametrize("path", SFT_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_sft_recipe_parses(path):
    script_args, training_args, model_args = _parse_recipe(path)
    assert script_args.version == 1
    assert script_args.model and script_args.dataset
    assert model_args.use_peft and model_args.lora_r == 16 and model_args.lora_alpha == 32
    assert training_args.completion_only_loss is True
    assert training_args.num_train_epochs == 5  # the paper's schedule
    assert training_args.output_dir.startswith("outputs/")
    if path.name == "qlora.yaml":
        assert model_args.load_in_4bit


def test_cpu_recipe_is_cpu_only():
    _, training_args, model_args = _parse_recipe(CPU_RECIPE)
    assert training_args.use_cpu and not training_args.bf16 and not training_args.fp16
    assert model_args.lora_target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_recipe_with_unknown_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CPU_RECIPE.read_text() + "lora_rank: 8\n")
    with pytest.raises(ValueError, match="lora_rank"):
        _parse_recipe(bad)


EXPECTED_ACCELERATE = {
    "cpu": ("NO", "no", 1),
    "single-gpu": ("NO", "bf16", 1),
    "multi-gpu": ("MULTI_GPU", "bf16", -1),  # -1: not in the file, the launcher gives it (one process per GPU)
    "deepspeed-zero2": ("DEEPSPEED", "bf16", -1),
    "deepspeed-zero3": ("DEEPSPEED", "bf16", -1),
    "fsdp": ("FSDP", "bf16", -1),
}


def test_accelerate_config_files_match_the_names():
    assert set(ACCELERATE_CONFIGS) == set(EXPECTED_ACCELERATE)
    assert {p.stem for p in (REPO / "recipes" / "accelerate").glob("*.yaml")} == set(ACCELERATE_CONFIGS)


@pytest.mark.parametrize("name", sorted(EXPECTED_ACCELERATE))
def test_accelerate_config_loads(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(resolve_accelerate_config(name)))
    distributed_type, mixed_precision, num_processes = EXPECTED_ACCELERATE[name]
    assert isinstance(config, ClusterConfig)
    assert config.compute_environment == "LOCAL_MACHINE"
    assert config.distributed_type == distributed_type
    assert config.mixed_precision == mixed_precision
    assert config.num_processes == num_processes
    assert config.use_cpu is (name == "cpu")
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])
    if name == "fsdp":
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


@pytest.mark.parametrize("name", ["multi-gpu", "deepspeed-zero2", "deepspeed-zero3", "fsdp"])
def test_multi_process_configs_take_the_process_count_from_the_launcher(name):
    """No GPU count is written in the multi-GPU configs: `accelerate launch` asks for --num_processes and uses it."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser, config = launch_command_parser(), str(resolve_accelerate_config(name))
    with pytest.raises(ValueError, match="num_processes"):
        _validate_launch_command(parser.parse_args(["--config_file", config, "train.py"]))
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", config, "--num_processes", "4", "t.py"]))
    assert args.num_processes == 4


def test_resolve_accelerate_config_path_and_unknown(tmp_path):
    assert resolve_accelerate_config("cpu").resolve() == (REPO / "recipes" / "accelerate" / "cpu.yaml").resolve()
    own = tmp_path / "mine.yaml"
    own.write_text("compute_environment: LOCAL_MACHINE\n")
    assert resolve_accelerate_config(own) == own
    assert resolve_accelerate_config(str(own)) == own
    with pytest.raises(ValueError, match="deepspeed-zero3") as err:
        resolve_accelerate_config("zero3")
    assert "'cpu'" in str(err.value)


# Data loading and validation


def _synthetic_dataset(sft_rows):
    """What make_synthetic_dataset saves: accepted rows plus rejects (empty messages, a reject_reason)."""
    from datasets import Dataset

    rows = [{**row, "question": "q", "reject_reason": None} for row in sft_rows[:4]]
    rows.insert(1, {"messages": [], "question": "q", "reject_reason": "no_final_answer"})
    rows.append({"messages": [], "question": "q", "reject_reason": "truncated"})
    return Dataset.from_list(rows)


def test_load_training_data_from_jsonl_and_run_dir(tmp_path, sft_rows):
    rows = [{**row, "reject_reason": None, "method": "embedsdg"} for row in sft_rows[:5]]
    _write_jsonl(tmp_path / "train.jsonl", rows)
    for spec in (tmp_path / "train.jsonl", tmp_path):
        ds = load_training_data(str(spec))
        assert ds.column_names == ["messages"]
        assert len(ds) == 5
        assert ds[0]["messages"] == sft_rows[0]["messages"]


def test_load_training_data_drops_rejects_from_save_to_disk(tmp_path, sft_rows):
    _synthetic_dataset(sft_rows).save_to_disk(str(tmp_path / "run" / "synthetic"))
    # the save_to_disk folder itself, or a run dir that has no train.jsonl
    for spec in (tmp_path / "run" / "synthetic", tmp_path / "run"):
        ds = load_training_data(str(spec))
        assert ds.column_names == ["messages"]
        assert ds["messages"] == [row["messages"] for row in sft_rows[:4]]


def test_missing_messages_column_is_named(tmp_path, gsm8k_rows):
    path = _write_jsonl(tmp_path / "raw.jsonl", gsm8k_rows[:3])
    with pytest.raises(ValueError, match="messages") as err:
        load_training_data(str(path))
    assert "'question'" in str(err.value) and "'answer'" in str(err.value)


def test_bad_rows_are_reported_with_their_index(tmp_path, sft_rows):
    rows = [
        sft_rows[0],
        {"messages": _messages("What is 2+2?", "  ")},  # empty assistant turn
        sft_rows[1],
        {"messages": [{"role": "user", "content": "What is 2+2?"}]},  # no assistant turn
    ]
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(ValueError) as err:
        load_training_data(str(path))
    message = str(err.value)
    assert "2 of 4 rows" in message
    assert "row 1: empty assistant turn" in message
    assert "row 3: no assistant turn" in message


def test_missing_path_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="does not exist"):
        load_training_data(str(tmp_path / "nope.jsonl"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(ValueError, match="does not exist"):  # a missing run dir, not a Hub id
        load_training_data("outputs/gsm8k-cpu")


def test_run_train_reports_bad_recipe_and_data(tmp_path, gsm8k_rows, capsys):
    bad_version = ["--config", str(CPU_RECIPE), "--version", "2", "--output_dir", str(tmp_path / "a")]
    assert run_train(bad_version) == 2
    assert "version 2 is not supported" in capsys.readouterr().err
    raw = _write_jsonl(tmp_path / "raw.jsonl", gsm8k_rows[:2])
    assert run_train(["--config", str(CPU_RECIPE), "--dataset", str(raw), "--output_dir", str(tmp_path / "b")]) == 2
    assert "no column 'messages'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_model_and_model_name_or_path_conflict(sft_rows):
    from datasets import Dataset

    _, training_args, model_args = _parse_recipe(CPU_RECIPE, "--model_name_or_path", "org/other")
    with pytest.raises(ValueError, match="model_name_or_path"):
        build_trainer(
            Dataset.from_list(sft_rows[:2]),
            model="smollm2-135m-instruct",
            training_args=training_args,
            model_args=model_args,
        )


# The loss mask


def _collated(student, rows, tmp_path, *extra):
    from datasets import Dataset

    _, training_args, model_args = _parse_recipe(CPU_RECIPE, "--output_dir", str(tmp_path), *extra)
    trainer = build_trainer(Dataset.from_list(rows), model=student, training_args=training_args, model_args=model_args)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    return trainer.processing_class, batch


def test_loss_is_on_the_assistant_answer_only(student, sft_rows, tmp_path):
    rows = sft_rows[:2]
    tokenizer, batch = _collated(student, rows, tmp_path)
    for i, row in enumerate(rows):
        user, assistant = row["messages"]
        prompt = tokenizer.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        input_ids, labels = batch["input_ids"][i], batch["labels"][i]
        real = batch["attention_mask"][i].bool()
        trained = labels != -100
        assert input_ids[: len(prompt_ids)].tolist() == list(prompt_ids)
        assert not trained[: len(prompt_ids)].any(), "a prompt token (system/user turn, assistant header) has a label"
        assert trained[len(prompt_ids) :][real[len(prompt_ids) :]].all(), "an answer token is masked"
        assert not trained[~real].any(), "a padding token has a label"
        assert (labels[trained] == input_ids[trained]).all()
        assert tokenizer.decode(input_ids[trained]) == assistant["content"] + END_OF_TURN


def test_without_completion_only_loss_the_prompt_is_trained(student, sft_rows, tmp_path):
    _, batch = _collated(student, sft_rows[:2], tmp_path, "--completion_only_loss", "false")
    real = batch["attention_mask"].bool()
    assert (batch["labels"][real] == batch["input_ids"][real]).all()


# The adapter card


def test_adapter_card_names_the_base_model_by_its_hub_id(student, tmp_path):
    """PEFT's card names the folder the base was loaded from (the built-in's cache path); ours names the Hub id."""
    from huggingface_hub import ModelCard
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from embedsdg_hf.common.models import resolve_model
    from embedsdg_hf.training.train import name_base_model

    path = resolve_model(student)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    assert ModelCard.load(tmp_path / "adapter" / "README.md").data.base_model == path  # what PEFT writes
    assert name_base_model(tmp_path / "adapter", student) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    assert name_base_model(tmp_path / "adapter", path) is None  # a local folder has no Hub id: card left as is
    assert ModelCard.load(tmp_path / "adapter" / "README.md").data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_trained_adapter_names_the_hub_id_and_loads_from_its_folder_alone(student, sft_rows, tmp_path, single_thread):
    """Two LoRA steps; the folder names the built-in's Hub id (config, card, PEFT tag), never the local cache path,
    and PEFT loads it from the folder alone: the base named in adapter_config.json resolves offline through the
    built-in's local folder (``resolve_model``), and the loaded adapter gives the trained logits."""
    import torch
    from huggingface_hub import ModelCard
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from embedsdg_hf.common.models import load_tokenizer, resolve_model

    data = _write_jsonl(tmp_path / "train.jsonl", sft_rows[:4])
    out = tmp_path / "adapter"
    argv = ["--config", str(CPU_RECIPE), "--dataset", str(data), "--output_dir", str(out), "--max_steps", "2"]
    argv += ["--per_device_train_batch_size", "2", "--max_length", "96", "--learning_rate", "1e-2", "--merge", "false"]
    assert run_train([*argv, "--disable_tqdm", "true", "--lora_r", "4"]) == 0

    local = resolve_model(student)
    config = PeftConfig.from_pretrained(str(out))
    assert config.base_model_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "base_model:adapter:HuggingFaceTB/SmolLM2-135M-Instruct" in card.data.tags
    assert local not in (out / "README.md").read_text() + (out / "adapter_config.json").read_text()

    base = AutoModelForCausalLM.from_pretrained(resolve_model(config.base_model_name_or_path), dtype=torch.float32)
    inputs = load_tokenizer(student)(sft_rows[5]["messages"][0]["content"], return_tensors="pt")
    with torch.no_grad():
        base_logits = base.eval()(**inputs).logits
        adapted = PeftModel.from_pretrained(base, str(out)).eval()
        adapted_logits = adapted(**inputs).logits
    assert adapted.peft_config["default"].r == 4
    assert (adapted_logits - base_logits).abs().max() > 1e-3, "the loaded adapter changes nothing"


# CPU smoke run


@pytest.fixture
def single_thread():
    """One intra-op thread (tests/_eval.py): on a shared 2-core machine, two OpenMP threads next to another busy
    process wait on each other at every op (measured here: 167 s for this test under load, 30 s with one thread)."""
    with one_torch_thread():
        yield


@pytest.mark.slow
def test_cpu_lora_smoke_run(student, sft_rows, tmp_path, single_thread):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from embedsdg_hf.common.models import load_tokenizer, resolve_model

    data = _write_jsonl(tmp_path / "train.jsonl", sft_rows)
    out = tmp_path / "sft-lora"
    argv = ["--config", str(CPU_RECIPE), "--dataset", str(data), "--output_dir", str(out), "--max_steps", "3"]
    argv += ["--per_device_train_batch_size", "4", "--max_length", "128", "--learning_rate", "1e-2"]
    argv += ["--eval_fraction", "0.25", "--merge", "true", "--dtype", "float32", "--disable_tqdm", "true"]
    assert run_train(argv) == 0

    results = json.loads((out / "train_results.json").read_text())
    assert results["global_step"] == 3
    assert (results["train_examples"], results["eval_examples"]) == (12, 4)
    assert results["train_loss"] > 0 and results["seconds_per_step"] > 0
    assert "eval_loss" in json.loads((out / "eval_results.json").read_text())
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (out / "tokenizer_config.json").is_file() and (out / "merged" / "config.json").is_file()
    from huggingface_hub import ModelCard

    assert ModelCard.load(out / "README.md").data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"

    tokenizer = load_tokenizer(student)
    text = tokenizer.apply_chat_template(sft_rows[0]["messages"], tokenize=False)
    inputs = tokenizer(text, return_tensors="pt")
    base = AutoModelForCausalLM.from_pretrained(resolve_model(student), dtype=torch.float32).eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = base(**inputs).logits
        adapted_logits = PeftModel.from_pretrained(base, str(out)).eval()(**inputs).logits
        merged_logits = merged(**inputs).logits
    torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-3, rtol=1e-3)
    assert (adapted_logits - base_logits).abs().max() > 1e-2, "training left the model unchanged"


# Plain TRL on a run dir: train.jsonl carries TRL's prompt-completion columns, so `trl sft` masks the prompt itself


def test_plain_trl_sft_on_a_run_dir_trains_on_the_answer_only(student, gsm8k_rows, tmp_path):
    """What `trl sft --model_name_or_path ... --dataset_name <run dir>` does: TRL's own parser, `load_dataset` of
    the folder, SFTTrainer with no completion_only_loss set, TRL's collator. The labels cover the answer only."""
    from datasets import load_dataset
    from trl import SFTTrainer
    from trl.scripts.sft import make_parser

    from embedsdg_hf.common.models import resolve_model

    run = write_run_dir(tmp_path / "run", gsm8k_rows)
    argv = ["--model_name_or_path", resolve_model(student), "--dataset_name", str(run)]
    argv += ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--bf16", "false", "--report_to", "none"]
    script_args, training_args, model_args, _ = make_parser().parse_args_and_config(argv)
    assert training_args.completion_only_loss is None  # nothing tells TRL to mask: the data format does
    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    train = dataset[script_args.dataset_train_split]
    assert list(dataset) == ["train"] and len(train) == 4  # train.jsonl, not the other files of the run dir
    assert {"messages", "prompt", "completion"} <= set(train.column_names)
    trainer = SFTTrainer(model=model_args.model_name_or_path, args=training_args, train_dataset=train)
    assert trainer.completion_only_loss
    tokenizer = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(train))])
    for i, row in enumerate(train):
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        input_ids, labels = batch["input_ids"][i], batch["labels"][i]
        trained = labels != -100
        assert input_ids[: len(prompt_ids)].tolist() == list(prompt_ids)
        assert not trained[: len(prompt_ids)].any(), "a prompt token (system/user turn, assistant header) has a label"
        assert tokenizer.decode(input_ids[trained]) == row["completion"][0]["content"] + END_OF_TURN
        assert row["completion"][0]["content"].endswith(f"#### {row['final_answer']}")


@pytest.mark.slow
def test_recipe_adapter_key_continues_training_that_adapter(student, sft_rows, tmp_path, single_thread):
    """`adapter:` trains an existing LoRA adapter further (its weights move from where they were, its LoRA settings
    are kept), instead of starting a fresh one; a folder that is not an adapter is a clear error."""
    from safetensors.torch import load_file

    data = _write_jsonl(tmp_path / "train.jsonl", sft_rows[:8])
    common = ["--config", str(CPU_RECIPE), "--dataset", str(data), "--max_steps", "1", "--merge", "false"]
    common += ["--per_device_train_batch_size", "4", "--max_length", "128", "--learning_rate", "1e-2"]
    common += ["--dtype", "float32", "--disable_tqdm", "true"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_train([*common, "--output_dir", str(first), "--lora_r", "4"]) == 0
    assert run_train([*common, "--output_dir", str(second), "--adapter", str(first), "--lora_r", "16"]) == 0
    assert json.loads((second / "adapter_config.json").read_text())["r"] == 4  # the adapter's own settings
    before, after = load_file(first / "adapter_model.safetensors"), load_file(second / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    lora_b = [key for key in before if "lora_B" in key]
    assert all(before[key].abs().max() > 0 for key in lora_b), "the first run trained lora_B away from zero"
    moved = max(float((after[key] - before[key]).abs().max()) for key in lora_b)
    assert moved > 0, "the second run did not train the adapter it was given"
    assert run_train([*common, "--output_dir", str(tmp_path / "bad"), "--adapter", str(tmp_path)]) == 2


def test_answer_loss_prefers_the_right_solution(student):
    """The reference solution of a word problem costs the base student fewer nats per token than another problem's
    solution; the loss covers the answer tokens only, and per-family means come with intervals."""
    from embedsdg_hf.data.word_problems import make_word_problems
    from embedsdg_hf.training.answer_loss import add_answer_loss, answer_loss_by_group

    rows = make_word_problems(6, seed=3)
    swapped = rows.map(lambda row, i: {"answer": rows[(i + 3) % 6]["answer"]}, with_indices=True)
    right = add_answer_loss(rows, model=student, batch_size=4)
    wrong = add_answer_loss(swapped, model=student, batch_size=4)
    assert right.column_names == [*rows.column_names, "answer_loss", "answer_tokens"]
    assert np.all(np.asarray(right["answer_loss"]) < np.asarray(wrong["answer_loss"]))
    assert all(0 < n < 200 for n in right["answer_tokens"])
    one = add_answer_loss(rows.select([0]), model=student)
    assert one["answer_loss"][0] == pytest.approx(right["answer_loss"][0], rel=1e-4)  # padding does not leak in
    groups = answer_loss_by_group(["a", "a", "b"], [1.0, 3.0, float("nan")])
    assert groups["a"]["mean"] == 2.0 and groups["a"]["ci_low"] < 2.0 < groups["a"]["ci_high"]
    assert groups["b"]["n"] == 0
    with pytest.raises(ValueError, match="no column 'answer'"):
        add_answer_loss(rows.remove_columns("answer"), model=student)
