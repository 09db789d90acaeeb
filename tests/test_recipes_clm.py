"""recipes/clm.py end to end on a tiny GPT-2: it learns, saves a folder the transformers Auto classes and the
text-generation pipeline load, resumes exactly after a kill, runs on 2 processes like 1, and rejects bad input
before training."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, recipe_env, run_recipe

TINY = ["--report_to", "none", "--vocab_size", "500", "--hidden_size", "32", "--num_hidden_layers", "2",
        "--num_attention_heads", "2", "--intermediate_size", "64", "--max_seq_length", "32",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--logging_steps", "5",
        "--sample_max_new_tokens", "8"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

# Runs the recipe as __main__ after making the N-th save_checkpoint call SIGKILL the process before it writes
# anything: a job pre-empted between two checkpoints, with no hook in the recipe itself.
KILL_LAUNCHER = """
import os, runpy, signal, sys
import hfssl.checkpointing as ckpt
at = int(sys.argv[1])
sys.argv = sys.argv[2:]
real, calls = ckpt.save_checkpoint, {"n": 0}
def save_checkpoint(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
ckpt.save_checkpoint = save_checkpoint
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _load_recipe():
    # main() runs in this process: forget any Accelerator state an earlier test left (e.g. another precision).
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    spec = importlib.util.spec_from_file_location("clm_recipe", ROOT / "recipes" / "clm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["clm_recipe"] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _history(out):
    return json.loads((out / "training_log.json").read_text())["loss_history"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, docs_text_file):
    out = tmp_path_factory.mktemp("clm") / "out"
    run_recipe("clm.py", "--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "60",
               "--eval_steps", "30", *TINY, "--report_to", "tensorboard")
    return out


def test_smoke_loss_falls_and_perplexity_is_reported(trained):
    history = _history(trained)
    results = json.loads((trained / "all_results.json").read_text())
    assert history[0][1] - history[-1][1] > 0.5, history
    assert results["eval_loss"] < history[0][1] < math.log(500) + 0.5  # starts near uniform over the vocabulary
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]))
    for key in ("train_tokens_per_second", "train_runtime", "eval_tokens", "peak_memory_mb"):
        assert results[key] > 0
    assert results["train_steps"] == 60 and results["train_tokens"] == 60 * 16 * 32
    eval_history = json.loads((trained / "training_log.json").read_text())["eval_history"]
    assert [s for s, _ in eval_history] == [30, 60] and eval_history[1][1] < eval_history[0][1]
    assert results["sample"].startswith("The function")
    assert list(trained.rglob("events.out.tfevents.*")), "nothing was logged to TensorBoard"


def test_saved_folder_loads_with_auto_classes_and_text_generation(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    assert (trained / "model.safetensors").is_file() and not list(trained.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(trained)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.n_positions == 32
    assert model.config.vocab_size == len(tokenizer) and model.config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|endoftext|>"
    text = "Return the list of strings."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level BPE: lossless, nothing added
    generate = pipeline("text-generation", model=str(trained))
    out = generate("The function", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert out.startswith("The function") and len(out) > len("The function")
    card = (trained / "README.md").read_text()
    assert card.startswith("---") and "pipeline_tag: text-generation" in card and "perplexity" in card
    assert (trained / "hfssl_config.yaml").is_file()


def test_torch_compile_keeps_plain_parameter_names_in_checkpoints_and_the_saved_model(tmp_path, docs_text_file):
    # torch.compile(model) wraps the model: its checkpoints then named every weight "_orig_mod.…", so they could not
    # be resumed without --torch_compile. Compiled in place, the names are the plain model's.
    from transformers import AutoModelForCausalLM

    recipe = _load_recipe()
    out = tmp_path / "compiled"
    results = recipe.main(["--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "4",
                           "--eval_steps", "0", "--checkpointing_steps", "2", *TINY, "--torch_compile", "true"])
    assert results["train_steps"] == 4
    checkpoint = load_file(out / "checkpoints" / "step_00000002" / "model.safetensors").keys()
    assert checkpoint and not [n for n in checkpoint if "_orig_mod" in n]
    assert not [n for n in load_file(out / "model.safetensors").keys() if "_orig_mod" in n]
    _, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, docs_text_file):
    args = ["--train_file", str(docs_text_file), "--max_steps", "30", "--checkpointing_steps", "10",
            "--eval_steps", "0", *TINY]
    out = tmp_path / "interrupted"
    launcher = tmp_path / "kill.py"
    launcher.write_text(KILL_LAUNCHER)
    proc = subprocess.run([sys.executable, str(launcher), "2", str(ROOT / "recipes" / "clm.py"), "--output_dir",
                           str(out), *args], env=recipe_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == -9, proc.stderr[-3000:]  # killed at step 20, before its checkpoint
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000010"]
    assert not (out / "model.safetensors").exists()
    # The tokenizers library breaks frequency ties in hash order, so the uninterrupted run shares the tokenizer
    # the interrupted run trained (and saved with its checkpoints, where the resumed run finds it).
    run_recipe("clm.py", "--output_dir", str(tmp_path / "straight"), "--tokenizer_name",
               str(out / "checkpoints" / "tokenizer"), *args)
    run_recipe("clm.py", "--output_dir", str(out), "--resume_from_checkpoint", "latest", *args)

    straight, resumed = load_file(tmp_path / "straight" / "model.safetensors"), load_file(out / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert _history(out) == _history(tmp_path / "straight")


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tmp_path, docs_text_file):
    """torchrun with 2 processes x 16 blocks computes what 1 process x 32 blocks does (dropout off, fp32): the
    same data order and loss normalisation; only float summation order differs."""
    tok_run = tmp_path / "tok"
    run_recipe("clm.py", "--train_file", str(docs_text_file), "--output_dir", str(tok_run), "--max_steps", "1",
               "--eval_steps", "0", *TINY)
    common = ["--train_file", str(docs_text_file), "--tokenizer_name", str(tok_run), "--max_steps", "15",
              "--eval_steps", "0", "--dropout", "0", "--mixed_precision", "no",
              *[a for a in TINY if a not in ("--logging_steps", "5")], "--logging_steps", "1"]
    one = [a if a != "16" else "32" for a in common]  # --per_device_train_batch_size 32 on one process
    run_recipe("clm.py", "--output_dir", str(tmp_path / "one"), *one)
    proc = run_recipe("clm.py", "--output_dir", str(tmp_path / "two"), *common, launcher=TORCHRUN)
    results = json.loads((tmp_path / "two" / "all_results.json").read_text())
    assert results["num_processes"] == 2, proc.stderr[-2000:]
    assert results["train_tokens"] == 15 * 2 * 16 * 32
    curve_one, curve_two = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert [s for s, _ in curve_one] == [s for s, _ in curve_two] == list(range(1, 16))
    assert curve_two[0][1] > curve_two[-1][1]
    for (_, a), (_, b) in zip(curve_one, curve_two):
        assert abs(a - b) < 1e-4 * abs(a), (curve_one, curve_two)
    one_eval = json.loads((tmp_path / "one" / "all_results.json").read_text())["eval_loss"]
    assert results["eval_loss"] == pytest.approx(one_eval, rel=1e-4)  # the whole validation set, counted once


def test_streaming_with_gradient_accumulation(tmp_path, docs_text_file):
    out = tmp_path / "stream"
    run_recipe("clm.py", "--train_file", str(docs_text_file), "--output_dir", str(out), "--streaming", "true",
               "--gradient_accumulation_steps", "2", "--max_steps", "6", "--eval_steps", "0", "--max_eval_samples", "40",
               *TINY)
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_steps"] == 6 and results["train_tokens"] == 6 * 2 * 16 * 32 and results["eval_loss"] > 0


@pytest.mark.parametrize("flags, message", [
    (["--hidden_size", "30", "--num_attention_heads", "4"], "divisible by num_attention_heads"),
    (["--learning_rate", "-1"], "learning_rate must be positive"),
    (["--dropout", "1.5"], "dropout must be in"),
    (["--adam_beta2", "1.0"], "adam_beta2 must be in"),
    (["--max_seq_length", "1"], "max_seq_length must be at least 2"),
    (["--model_type", "llama"], "invalid choice"),
    (["--text_column", "body"], "no column 'body'"),
    (["--streaming", "true", "--max_steps", "0"], "--max_steps"),
    (["--max_seq_length", "100000"], "no complete block"),
])
def test_bad_config_fails_before_training(tmp_path, docs_text_file, flags, message, capsys):
    recipe = _load_recipe()
    base = ["--train_file", str(docs_text_file), "--output_dir", str(tmp_path / "out"), "--max_steps", "5", *TINY]
    with pytest.raises((Exception, SystemExit)) as info:
        recipe.main(base + flags)
    assert message in str(info.value) + capsys.readouterr().err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_tokenizer_without_eos_and_too_short_position_table(tmp_path, trained, docs_text_file):
    from hfssl.data.tokenizer_training import train_tokenizer

    bert_tok = tmp_path / "bert-tok"
    train_tokenizer("bert", docs_text_file.read_text().splitlines()[:200], 300).save_pretrained(bert_tok)
    recipe = _load_recipe()
    with pytest.raises(Exception, match="no eos token"):
        recipe.main(["--train_file", str(docs_text_file), "--output_dir", str(tmp_path / "a"), "--tokenizer_name",
                     str(bert_tok), *TINY])
    with pytest.raises(Exception, match="position table"):
        recipe.main(["--train_file", str(docs_text_file), "--output_dir", str(tmp_path / "b"), "--model_name_or_path",
                     str(trained), "--max_seq_length", "64", "--report_to", "none"])
    assert not (tmp_path / "a" / "model.safetensors").exists() and not (tmp_path / "b" / "model.safetensors").exists()
