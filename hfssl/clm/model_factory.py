"""Build (or load) the ``*ForCausalLM`` model a causal-LM run trains, with size checks before anything is built.

A new model is a GPT-2 (Radford et al. 2019: pre-LayerNorm decoder, learned positions, tied input and output
embeddings) sized by the recipe's flags; ``--model_name_or_path`` continues any causal LM the Hub offers under
``AutoModelForCausalLM`` (safetensors only, no remote code).
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerBase

from ..config import ConfigError
from ..mlm.model_factory import check_sizes


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Packing separates documents with the end-of-text token, so the tokenizer must have one."""
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"Tokenizer {source} has no eos token; packing needs one between documents. Use a causal-LM "
                          f"tokenizer (e.g. openai-community/gpt2) or omit --tokenizer_name to train one.")


def gpt2_config(cfg, tokenizer: PreTrainedTokenizerBase) -> GPT2Config:
    """A GPT-2 config sized by ``cfg`` whose vocabulary and special tokens match ``tokenizer``."""
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.max_seq_length,
        n_embd=cfg.hidden_size,
        n_layer=cfg.num_hidden_layers,
        n_head=cfg.num_attention_heads,
        n_inner=cfg.intermediate_size,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(cfg, tokenizer: PreTrainedTokenizerBase):
    """Continue from ``cfg.model_name_or_path`` or initialise a fresh GPT-2 sized by ``cfg``."""
    if cfg.model_name_or_path:
        # float32 master weights whatever dtype the checkpoint was stored in; autocast gives bf16/fp16 compute.
        model = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, trust_remote_code=False,
                                                     use_safetensors=True, dtype=torch.float32)
        check_sizes(model.config.hidden_size, model.config.num_attention_heads, cfg.max_seq_length,
                    getattr(model.config, "max_position_embeddings", None))
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        return model
    return AutoModelForCausalLM.from_config(gpt2_config(cfg, tokenizer))
