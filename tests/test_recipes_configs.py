"""Every YAML config that ships in recipes/configs/ parses into its recipe's config dataclass."""

import dataclasses
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from hfssl.config import load_yaml, parse_config
from hfssl.precision import resolve_mixed_precision

ROOT = Path(__file__).resolve().parent.parent
# recipe -> where its config dataclass lives ("recipe" for the script itself).
CONFIG_CLASSES = {
    "mlm": ("hfssl.mlm.config", "MLMConfig"),
    "clm": ("recipe", "CLMConfig"),
    "word2vec": ("hfssl.word2vec.config", "Word2VecConfig"),
    "contrastive": ("hfssl.contrastive.config", "ContrastiveConfig"),
    "finetune": ("hfssl.finetune.config", "FinetuneConfig"),
    "mae": ("hfssl.mae.config", "MAEConfig"),
    "image_finetune": ("recipe", "ImageFinetuneConfig"),
}


def _config_class(recipe: str):
    module_name, class_name = CONFIG_CLASSES[recipe]
    if module_name != "recipe":
        return getattr(importlib.import_module(module_name), class_name)
    name = f"_recipe_{recipe}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{recipe}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return getattr(sys.modules[name], class_name)


CASES = [(recipe, path) for recipe in CONFIG_CLASSES for path in sorted((ROOT / "recipes" / "configs" / recipe).glob("*.yaml"))]


@pytest.mark.parametrize("recipe, path", CASES, ids=[f"{r}/{p.name}" for r, p in CASES])
def test_yaml_parses_and_every_value_lands(recipe, path):
    cls = _config_class(recipe)
    cfg = parse_config(cls, ["--config", str(path)])
    for key, value in load_yaml(path).items():
        if key == "mixed_precision":  # "auto" lands as what it means on this machine
            value = resolve_mixed_precision(value)
        assert getattr(cfg, key) == value, key


@pytest.mark.parametrize("recipe", ["mlm", "clm"])
def test_offline_yaml_is_exactly_the_defaults(recipe):
    defaults = _field_defaults(_config_class(recipe))
    for key, value in load_yaml(ROOT / "recipes" / "configs" / recipe / "offline.yaml").items():
        assert defaults[key] == value, f"offline.yaml {key}={value} but the dataclass default is {defaults[key]}"


def test_mae_digits_yaml_is_exactly_the_defaults():
    defaults = _field_defaults(_config_class("mae"))
    for key, value in load_yaml(ROOT / "recipes" / "configs" / "mae" / "digits.yaml").items():
        assert defaults[key] == value, f"digits.yaml {key}={value} but the dataclass default is {defaults[key]}"


def _field_defaults(cls) -> dict:
    """The defaults as declared, before __post_init__ resolves any (``mixed_precision: auto``)."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def test_every_recipe_with_configs_is_covered():
    folders = {p.name for p in (ROOT / "recipes" / "configs").iterdir() if p.is_dir() and p.name != "accelerate"}
    assert folders <= set(CONFIG_CLASSES)


def test_accelerate_configs_are_valid_yaml():
    for path in (ROOT / "recipes" / "configs" / "accelerate").glob("*.yaml"):
        assert load_yaml(path)["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")


@pytest.mark.parametrize("model_type, layer_flag", [("bert", None), ("roberta", "RobertaLayer")])
def test_fsdp_config_wraps_every_transformer_layer(model_type, layer_flag):
    """fsdp.yaml's auto-wrap policy, as Accelerate builds it, gives each encoder layer its own FSDP unit.

    BERT uses the YAML as is; RoBERTa uses the README's `--fsdp_transformer_layer_cls_to_wrap RobertaLayer`
    override (Accelerate raises if a listed class is absent from the model)."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from transformers import AutoConfig, AutoModelForMaskedLM

    fsdp = load_yaml(ROOT / "recipes" / "configs" / "accelerate" / "fsdp.yaml")["fsdp_config"]
    names = layer_flag or fsdp["fsdp_transformer_layer_cls_to_wrap"]
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"],
        auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
        transformer_cls_names_to_wrap=names.split(","),
    )
    config = AutoConfig.for_model(model_type, vocab_size=64, hidden_size=16, num_hidden_layers=3,
                                  num_attention_heads=2, intermediate_size=32)
    model = AutoModelForMaskedLM.from_config(config)
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = [m for m in model.modules() if policy(m)]
    assert len(wrapped) == 3
    assert all(type(m).__name__.lower().startswith(model_type) for m in wrapped)


def test_mlm_fixed_sparse_capacity_defaults_to_on_for_cpu_only(monkeypatch):
    import hfssl.mlm.config as mlm_config

    for cpu_only in (True, False):
        monkeypatch.setattr(mlm_config, "no_accelerator", lambda: cpu_only)
        assert parse_config(mlm_config.MLMConfig, []).fixed_sparse_capacity is cpu_only
        assert parse_config(mlm_config.MLMConfig, ["--fixed_sparse_capacity", "false"]).fixed_sparse_capacity is False
