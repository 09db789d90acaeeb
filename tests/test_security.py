"""Security invariants over the whole source tree (hfssl/, recipes/, benchmarks/): weights never go through pickle,
and remote code is never trusted by default.

A source scan, not a run: it catches a new ``torch.load(path)`` or ``trust_remote_code=True`` the moment it is
written, in any recipe, including code paths the offline tests cannot reach (Hub downloads).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("hfssl", "recipes", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def test_the_scan_sees_the_source_tree():
    assert len(SOURCES) > 20 and ROOT / "recipes" / "mlm.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_torch_load_only_with_weights_only_true_and_no_pickle_loads(path):
    for call in _calls(path):
        name = _name(call.func)
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        if name == "torch.load":
            kwargs = {k.arg: k.value for k in call.keywords}
            assert isinstance(kwargs.get("weights_only"), ast.Constant) and kwargs["weights_only"].value is True, (
                f"{where}: torch.load without weights_only=True can run arbitrary code from a pickle")
        assert name not in ("pickle.load", "pickle.loads", "dill.load", "joblib.load"), f"{where}: {name} of untrusted data"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_trust_remote_code_is_never_enabled(path):
    for call in _calls(path):
        for keyword in call.keywords:
            if keyword.arg == "trust_remote_code":
                value = keyword.value
                assert isinstance(value, ast.Constant) and value.value is False, (
                    f"{path.relative_to(ROOT)}:{call.lineno}: trust_remote_code must be the literal False")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # a config field or argument defaulting to True would enable it from a flag
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "trust_remote_code":
            assert "True" not in ast.unparse(node.value or ast.Constant(None)), f"{path.relative_to(ROOT)}:{node.lineno}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_weights_are_saved_as_safetensors(path):
    """``save_pretrained``/``save_state``/``save_model`` never switch safetensors off, and no weights are torch.save'd."""
    for call in _calls(path):
        name = _name(call.func)
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        for keyword in call.keywords:
            if keyword.arg in ("safe_serialization", "use_safetensors"):
                assert not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False), where
        assert name != "torch.save", f"{where}: torch.save writes a pickle; save weights with safetensors"


def _loads_weights(receiver: str) -> bool:
    """``AutoModel…``, ``…ForMaskedLM``, ``ViTMAEForPreTraining``: a class whose ``from_pretrained`` reads weights
    (configs, tokenizers and image processors read JSON only)."""
    last = receiver.rsplit(".", 1)[-1]
    return "Model" in last or "For" in last


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_weights_are_loaded_only_from_safetensors(path):
    """Every model ``from_pretrained`` passes ``use_safetensors=True``: without it transformers falls back to a
    ``pytorch_model.bin`` pickle when a Hub repo or folder has no safetensors file."""
    for call in _calls(path):
        func = call.func
        if not (isinstance(func, ast.Attribute) and func.attr == "from_pretrained" and _loads_weights(_name(func.value))):
            continue
        kwargs = {k.arg: k.value for k in call.keywords}
        value = kwargs.get("use_safetensors")
        assert isinstance(value, ast.Constant) and value.value is True, (
            f"{path.relative_to(ROOT)}:{call.lineno}: {_name(func)} without use_safetensors=True may unpickle weights")


def test_the_weights_scan_recognises_model_classes():
    assert _loads_weights("AutoModelForMaskedLM") and _loads_weights("transformers.ViTMAEForPreTraining")
    assert not _loads_weights("AutoTokenizer") and not _loads_weights("AutoConfig")
    assert not _loads_weights("AutoImageProcessor") and not _loads_weights("WordVectors")
