"""--report_to: trackers are checked before training, and a run logs its metrics to Trackio (local SQLite, offline)."""

import json
import sqlite3

import pytest

from conftest import recipe_env, run_recipe
from hfssl.config import ConfigError
from hfssl.tracking import tracker_names


def test_unknown_or_missing_tracker_package_is_a_config_error(monkeypatch):
    import importlib.util

    assert tracker_names("none") == []
    assert tracker_names("all") == ["tensorboard", "trackio"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "trackio" else real(name))
    with pytest.raises(ConfigError, match="pip install trackio"):
        tracker_names("trackio")


def test_mlm_run_logs_loss_and_eval_to_trackio(tmp_path, docs_text_file):
    store = tmp_path / "trackio"
    env = {**recipe_env(), "TRACKIO_DIR": str(store), "HF_TOKEN": "hf_secret_never_logged"}
    run_recipe("mlm.py", "--train_file", str(docs_text_file), "--output_dir", str(tmp_path / "out"), "--max_steps", "6",
               "--eval_steps", "3", "--report_to", "trackio", "--vocab_size", "500", "--hidden_size", "32",
               "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
               "--max_seq_length", "32", "--per_device_train_batch_size", "8", "--logging_steps", "2", env=env)
    with sqlite3.connect(store / "hfssl-mlm.db") as db:
        rows = [(step, json.loads(metrics)) for step, metrics in db.execute("SELECT step, metrics FROM metrics")]
        configs = " ".join(str(r) for r in db.execute("SELECT * FROM configs"))
    train = {step: m["train/loss"] for step, m in rows if "train/loss" in m}
    assert sorted(train) == [2, 4, 6] and all(loss > 0 for loss in train.values())
    assert {step for step, m in rows if "eval/eval_loss" in m} == {3, 6}
    assert "learning_rate" in configs
    assert not any(b"hf_secret_never_logged" in f.read_bytes() for f in store.rglob("*") if f.is_file())
