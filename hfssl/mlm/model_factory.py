"""Build (or load) the ``*ForMaskedLM`` model a masked-LM run trains, with size checks.

The tokenizer comes from :func:`hfssl.data.tokenizer_training.load_or_train_tokenizer`.

Sizes are checked against each other before anything is built, so an impossible config (heads that don't divide
the hidden size, sequences longer than the position table) fails in a second with a message saying what to change.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedTokenizerBase

from ..config import ConfigError

# RoBERTa offsets positions by padding_idx + 1, so its table needs two extra rows.
POSITION_OFFSET = {"bert": 0, "roberta": 2}


def check_sizes(hidden_size: int, num_attention_heads: int, max_seq_length: int, max_position_embeddings: int | None = None) -> None:
    if hidden_size % num_attention_heads:
        raise ConfigError(
            f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads}); "
            f"e.g. use --num_attention_heads {max(1, hidden_size // 64)}."
        )
    if max_position_embeddings is not None and max_seq_length > max_position_embeddings:
        raise ConfigError(
            f"max_seq_length ({max_seq_length}) is longer than the model's position table ({max_position_embeddings}). "
            f"Use --max_seq_length {max_position_embeddings} or less."
        )


def build_model(cfg, tokenizer: PreTrainedTokenizerBase):
    """Continue from ``cfg.model_name_or_path`` or initialise a fresh BERT/RoBERTa sized by ``cfg``."""
    if cfg.model_name_or_path:
        model = AutoModelForMaskedLM.from_pretrained(cfg.model_name_or_path, trust_remote_code=False, use_safetensors=True,
                                                     hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
        check_sizes(model.config.hidden_size, model.config.num_attention_heads, cfg.max_seq_length,
                    model.config.max_position_embeddings - POSITION_OFFSET.get(model.config.model_type, 0))
        if len(tokenizer) > model.config.vocab_size:
            model.resize_token_embeddings(len(tokenizer))
        return model
    config = AutoConfig.for_model(
        cfg.model_type,
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_seq_length + POSITION_OFFSET[cfg.model_type],
        type_vocab_size=2 if cfg.model_type == "bert" else 1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return AutoModelForMaskedLM.from_config(config)
