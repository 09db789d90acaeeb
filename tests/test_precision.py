"""--mixed_precision auto: bf16 only where the hardware computes it natively (hfssl/precision.py)."""

import warnings

import pytest
import torch

from hfssl import precision
from hfssl.config import RunConfig
from hfssl.precision import resolve_mixed_precision


def _machine(monkeypatch, *, cuda_capability=None, cpu_bf16=False, cpu_amx=False):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_capability is not None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: cuda_capability)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    if hasattr(torch, "xpu"):
        monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: cpu_amx, raising=False)


@pytest.mark.parametrize("machine, expected", [
    (dict(), "no"),                                  # AVX2-only CPU: bf16 is emulated, ~28x slower
    (dict(cpu_bf16=True), "bf16"),                   # AVX512-BF16
    (dict(cpu_amx=True), "bf16"),                    # AMX
    (dict(cuda_capability=(8, 0)), "bf16"),          # A100 and newer
    (dict(cuda_capability=(7, 0)), "no"),            # V100: no bf16 tensor cores
    (dict(cuda_capability=(7, 5), cpu_bf16=True), "no"),  # the GPU decides when there is one
])
def test_auto_picks_bf16_only_where_it_is_native(monkeypatch, machine, expected):
    _machine(monkeypatch, **machine)
    assert resolve_mixed_precision("auto") == expected


def test_explicit_values_pass_through_and_emulated_bf16_warns(monkeypatch):
    _machine(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_mixed_precision("no") == "no"
        assert resolve_mixed_precision("fp16") == "fp16"
    with pytest.warns(UserWarning, match="without AVX512-BF16"):
        assert resolve_mixed_precision("bf16") == "bf16"
    _machine(monkeypatch, cpu_bf16=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_mixed_precision("bf16") == "bf16"


def test_configs_hold_the_resolved_value(monkeypatch):
    """What the recipes read (and save in hfssl_config.yaml) is the concrete precision, never "auto"."""
    _machine(monkeypatch)
    assert RunConfig(mixed_precision="auto").mixed_precision == "no"
    _machine(monkeypatch, cpu_bf16=True)
    assert RunConfig(mixed_precision="auto").mixed_precision == "bf16"


def test_cpu_probe_answers_on_this_torch():
    """The private torch.cpu probes exist on the supported torch; if they vanish, auto silently means float32."""
    assert hasattr(torch.cpu, "_is_avx512_bf16_supported") and hasattr(torch.cpu, "_is_amx_tile_supported")
    assert isinstance(precision.cpu_has_native_bf16(), bool)
