"""recipes/mlm.py end to end on a tiny BERT: it learns, saves a loadable model, resumes exactly, runs on 2 processes,
and rejects bad input before training."""

import importlib.util
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, recipe_env, run_recipe

TINY = ["--report_to", "none", "--vocab_size", "500", "--hidden_size", "32", "--num_hidden_layers", "2",
        "--num_attention_heads", "2", "--intermediate_size", "64", "--max_seq_length", "32",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--logging_steps", "5"]


def _load_recipe():
    # main() runs in this process: forget any Accelerator state an earlier test left (e.g. another precision).
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    spec = importlib.util.spec_from_file_location("mlm_recipe", ROOT / "recipes" / "mlm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mlm_recipe"] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory, docs_text_file):
    out = tmp_path_factory.mktemp("mlm") / "out"
    run_recipe("mlm.py", "--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "60",
               "--eval_steps", "30", *TINY, "--report_to", "tensorboard")
    return out


def test_smoke_loss_falls_and_results_are_written(trained):
    history = json.loads((trained / "training_log.json").read_text())["loss_history"]
    results = json.loads((trained / "all_results.json").read_text())
    assert history[0][1] - history[-1][1] > 0.5, history
    assert results["eval_loss"] < history[0][1]
    for key in ("train_tokens_per_second", "train_tokens_per_second_steady", "train_runtime", "eval_loss", "perplexity",
                "peak_memory_mb"):
        assert results[key] > 0
    assert results["train_steps"] == 60 and results["num_processes"] == 1
    assert list(trained.rglob("events.out.tfevents.*")), "nothing was logged to TensorBoard"


def test_saved_folder_loads_with_auto_classes_and_fill_mask(trained):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    assert (trained / "model.safetensors").is_file() and not list(trained.glob("*.bin"))
    model = AutoModelForMaskedLM.from_pretrained(trained)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert model.config.vocab_size == len(tokenizer) and model.config.hidden_size == 32
    fill = pipeline("fill-mask", model=str(trained))
    predictions = fill(f"return the {tokenizer.mask_token} of the object.")
    assert len(predictions) == 5 and all(0 <= p["score"] <= 1 for p in predictions)
    assert (trained / "README.md").read_text().startswith("---")
    assert (trained / "hfssl_config.yaml").is_file()


def test_torch_compile_compiles_encoder_and_head_and_saves_plain_names(tmp_path, docs_text_file):
    # Sparse prediction calls the encoder and the head directly, never the model's own forward: compiling only
    # the model (torch.compile(model)) left both to run eagerly.
    from torch._dynamo.utils import counters
    from transformers import AutoModelForMaskedLM

    recipe = _load_recipe()
    torch._dynamo.reset()
    counters.clear()
    out = tmp_path / "compiled"
    results = recipe.main(["--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "4",
                           "--eval_steps", "0", *TINY, "--torch_compile", "true"])
    assert counters["stats"]["unique_graphs"] >= 2, dict(counters["stats"])
    assert results["train_steps"] == 4
    names = load_file(out / "model.safetensors").keys()
    assert not [n for n in names if "_orig_mod" in n]
    _, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_fixed_sparse_capacity_follows_the_loss_curve_of_exact_sparse_prediction(tmp_path, docs_text_file):
    """The head runs on a fixed number of rows, the masked ones first; the extra rows carry no label, so the run is
    the exact one up to float summation order."""
    recipe = _load_recipe()
    common = ["--train_file", str(docs_text_file), "--max_steps", "10", "--eval_steps", "0", "--dropout", "0",
              "--mixed_precision", "no", *[a for a in TINY if a not in ("--logging_steps", "5")], "--logging_steps", "1"]
    recipe.main([*common, "--output_dir", str(tmp_path / "exact")])
    recipe = _load_recipe()
    recipe.main([*common, "--output_dir", str(tmp_path / "fixed"), "--tokenizer_name", str(tmp_path / "exact"),
                 "--fixed_sparse_capacity", "true"])
    exact = json.loads((tmp_path / "exact" / "training_log.json").read_text())["loss_history"]
    fixed = json.loads((tmp_path / "fixed" / "training_log.json").read_text())["loss_history"]
    assert [s for s, _ in exact] == [s for s, _ in fixed] == list(range(1, 11))
    for (_, a), (_, b) in zip(exact, fixed):
        assert abs(a - b) < 1e-4 * abs(a), (exact, fixed)


def test_profile_steps_write_a_trace_and_a_summary_of_the_chosen_steps(tmp_path, docs_text_file, capsys):
    recipe = _load_recipe()
    out = tmp_path / "profiled"
    recipe.main(["--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "8", "--eval_steps", "0",
                 *TINY, "--profile_steps", "3", "--profile_skip_steps", "2"])
    summary = json.loads((out / "profile" / "summary_rank0.json").read_text())
    assert summary["steps"] == 3 and summary["wall_ms_per_step"] > 0
    assert any(op["name"].startswith("aten::") for op in summary["top_ops"]), summary["top_ops"]
    trace = json.loads((out / "profile" / "trace_rank0.json").read_text())
    steps = sorted(e["name"] for e in trace["traceEvents"] if str(e.get("name")).startswith("ProfilerStep#"))
    assert steps == ["ProfilerStep#3", "ProfilerStep#4", "ProfilerStep#5"]  # optimizer steps 4-6 of 8
    assert "profiled 3 steps" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file()


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, docs_text_file):
    args = ["--train_file", str(docs_text_file), "--max_steps", "40", "--checkpointing_steps", "10",
            "--eval_steps", "0", *TINY]
    out = tmp_path / "interrupted"
    cmd = [sys.executable, str(ROOT / "recipes" / "mlm.py"), "--output_dir", str(out), *args]
    proc = subprocess.Popen(cmd, env=recipe_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "step_00000010").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    assert not (out / "model.safetensors").exists()
    # The tokenizers library breaks frequency ties in hash order, so the uninterrupted run shares the tokenizer
    # the interrupted run trained (and saved with its checkpoints, where the resumed run finds it).
    run_recipe("mlm.py", "--output_dir", str(tmp_path / "straight"), "--tokenizer_name",
               str(out / "checkpoints" / "tokenizer"), *args)
    run_recipe("mlm.py", "--output_dir", str(out), "--resume_from_checkpoint", "latest", *args)

    straight, resumed = load_file(tmp_path / "straight" / "model.safetensors"), load_file(out / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert json.loads((out / "training_log.json").read_text()) == json.loads(
        (tmp_path / "straight" / "training_log.json").read_text())


def test_two_processes_with_torchrun(tmp_path, docs_text_file):
    out = tmp_path / "ddp"
    proc = run_recipe("mlm.py", "--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "30",
                      "--eval_steps", "0", *TINY,
                      launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])
    results = json.loads((out / "all_results.json").read_text())
    assert results["num_processes"] == 2, proc.stderr[-2000:]
    history = json.loads((out / "training_log.json").read_text())["loss_history"]
    assert history[0][1] > history[-1][1]
    # 2 processes x 16 sequences x 32 tokens per step
    assert results["train_tokens"] == 30 * 2 * 16 * 32


@pytest.mark.parametrize("flags, message", [
    (["--hidden_size", "30", "--num_attention_heads", "4"], "divisible by num_attention_heads"),
    (["--mlm_probability", "1.5"], "mlm_probability must be in"),
    (["--learning_rate", "-1"], "learning_rate must be positive"),
    (["--text_column", "body"], "no column 'body'"),
    (["--streaming", "true", "--max_steps", "0"], "--max_steps"),
    (["--profile_steps", "-1"], "--profile_steps and --profile_skip_steps must be >= 0"),
    (["--profile_steps", "5"], "do not fit in the 5 steps left"),
])
def test_bad_config_fails_before_training(tmp_path, docs_text_file, flags, message):
    recipe = _load_recipe()
    base = ["--train_file", str(docs_text_file), "--output_dir", str(tmp_path / "out"), "--max_steps", "5", *TINY]
    with pytest.raises(Exception, match=message):
        recipe.main(base + flags)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_bad_files_and_output_dir(tmp_path, docs_text_file):
    recipe = _load_recipe()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(docs_text_file.read_bytes()[:2000] + b"\ncaf\xe9\n")
    with pytest.raises(Exception, match="not valid UTF-8"):
        recipe.main(["--train_file", str(bad), "--output_dir", str(tmp_path / "a"), *TINY])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    with pytest.raises(Exception, match="overwrite_output_dir"):
        recipe.main(["--train_file", str(docs_text_file), "--output_dir", str(taken), *TINY])
    assert (taken / "notes.txt").read_text() == "keep me"


def test_sequence_longer_than_positions_of_continued_model(tmp_path, trained, docs_text_file):
    recipe = _load_recipe()
    with pytest.raises(Exception, match="position table"):
        recipe.main(["--train_file", str(docs_text_file), "--output_dir", str(tmp_path / "c"), "--model_name_or_path",
                     str(trained), "--max_seq_length", "64", "--report_to", "none"])


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tmp_path, docs_text_file):
    """Same data order, masks and gradient normalisation: only float summation order differs (dropout off)."""
    tok_run = tmp_path / "tok"
    run_recipe("mlm.py", "--train_file", str(docs_text_file), "--output_dir", str(tok_run), "--max_steps", "1",
               "--eval_steps", "0", *TINY)
    common = ["--train_file", str(docs_text_file), "--tokenizer_name", str(tok_run), "--max_steps", "20",
              "--eval_steps", "0", "--dropout", "0", "--logging_steps", "1", "--mixed_precision", "no",
              *[a for a in TINY if a not in ("--logging_steps", "5")]]
    one = [a if a != "16" else "32" for a in common]  # --per_device_train_batch_size 32 on one process
    run_recipe("mlm.py", "--output_dir", str(tmp_path / "one"), *one)
    run_recipe("mlm.py", "--output_dir", str(tmp_path / "two"), *common,
               launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])
    curve_one = json.loads((tmp_path / "one" / "training_log.json").read_text())["loss_history"]
    curve_two = json.loads((tmp_path / "two" / "training_log.json").read_text())["loss_history"]
    assert json.loads((tmp_path / "two" / "all_results.json").read_text())["num_processes"] == 2
    assert [s for s, _ in curve_one] == [s for s, _ in curve_two] == list(range(1, 21))
    for (_, a), (_, b) in zip(curve_one, curve_two):
        assert abs(a - b) < 1e-4 * abs(a), (curve_one, curve_two)


def test_roberta_line_by_line_whole_word_streaming(tmp_path, docs_text_file):
    """The other tokenizer family, unpacked lines, whole-word masks and a streamed dataset, in one run."""
    from transformers import AutoTokenizer, pipeline

    out = tmp_path / "roberta"
    run_recipe("mlm.py", "--train_file", str(docs_text_file), "--output_dir", str(out), "--model_type", "roberta",
               "--line_by_line", "true", "--whole_word_mask", "true", "--streaming", "true", "--max_steps", "15",
               "--eval_steps", "0", *TINY)
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_steps"] == 15 and results["eval_loss"] > 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.mask_token == "<mask>" and any(t.startswith("Ġ") for t in tokenizer.get_vocab())
    assert len(pipeline("fill-mask", model=str(out))(f"Return the{tokenizer.mask_token} of the list.")) == 5
