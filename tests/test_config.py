import dataclasses

import pytest

from hfssl.config import ConfigError, RunConfig, check_text_pretraining, parse_config


@dataclasses.dataclass
class _Cfg(RunConfig):
    learning_rate: float = 1e-3
    layers: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    name: str | None = None


def test_yaml_sets_values_and_cli_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-4\nseed: 7\nlayers: [3, 4, 5]\nmixed_precision: bf16\n")
    cfg = parse_config(_Cfg, ["--config", str(path), "--seed", "9"])
    assert cfg.learning_rate == 1e-4  # YAML 1.1 reads "1e-4" as a string; argparse converts it
    assert cfg.seed == 9 and cfg.layers == [3, 4, 5] and cfg.mixed_precision == "bf16"
    assert cfg.name is None and cfg.output_dir == RunConfig.output_dir


def test_unknown_yaml_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        parse_config(_Cfg, ["--config", str(path)])


def test_bad_choice_and_missing_file_fail_clearly(tmp_path):
    with pytest.raises(SystemExit):
        parse_config(_Cfg, ["--mixed_precision", "fp8"])
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config(_Cfg, ["--config", str(tmp_path / "nope.yaml")])
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        parse_config(_Cfg, ["--config", str(bad)])


def test_run_config_validation():
    with pytest.raises(ConfigError, match="hub_model_id"):
        parse_config(_Cfg, ["--push_to_hub", "true"])
    with pytest.raises(ConfigError, match="checkpointing_steps"):
        parse_config(_Cfg, ["--checkpointing_steps", "-1"])


_TEXT_OK = dict(learning_rate=1e-3, per_device_train_batch_size=8, per_device_eval_batch_size=8,
                gradient_accumulation_steps=1, max_seq_length=32, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, vocab_size=300, weight_decay=0.0, warmup_steps=0.0,
                max_steps=10, eval_steps=0, dropout=0.1, streaming=False, num_train_epochs=1.0, adam_beta2=0.98,
                max_grad_norm=1.0)


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 0}, "hidden_size must be positive"),
    ({"per_device_eval_batch_size": -1}, "per_device_eval_batch_size must be positive"),
    ({"warmup_steps": -0.1}, "must not be negative"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"adam_beta2": 1.0}, r"adam_beta2 must be in \(0, 1\)"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be >= 0"),
    ({"streaming": True, "max_steps": 0}, "streamed dataset has no length: pass --max_steps"),
    ({"max_steps": 0, "num_train_epochs": 0}, "--max_steps or --num_train_epochs"),
])
def test_check_text_pretraining_names_the_bad_flag(change, message):
    import types

    check_text_pretraining(types.SimpleNamespace(**_TEXT_OK))  # the valid baseline passes
    with pytest.raises(ConfigError, match=message):
        check_text_pretraining(types.SimpleNamespace(**{**_TEXT_OK, **change}))
