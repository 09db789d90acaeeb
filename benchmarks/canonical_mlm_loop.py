"""The peer for benchmarks/mlm_throughput.py: the canonical transformers masked-LM training loop.

What a user of the transformers examples runs (run_mlm_no_trainer.py): lines tokenized with special tokens,
concatenated and cut into blocks (``group_texts``), masked by ``DataCollatorForLanguageModeling`` in the DataLoader,
``AutoModelForMaskedLM`` called with ``labels`` (dense loss over every position), AdamW with a linear schedule, a
plain Accelerate loop. Written here from that description; it shares no code with hfssl's recipe so that the
comparison is with what users would otherwise run.
"""

from __future__ import annotations

import argparse

import torch
from accelerate import Accelerator
from datasets import load_dataset
from torch.utils.data import DataLoader
from transformers import (AutoConfig, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling,
                          get_scheduler, set_seed)

from canonical_lm_loop import group_texts_fn, train_and_save


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train_file", required=True)
    p.add_argument("--tokenizer_name", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--max_steps", type=int, default=100)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--per_device_train_batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=5e-4)
    p.add_argument("--warmup_steps", type=float, default=0.06)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--num_attention_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=1024)
    p.add_argument("--mlm_probability", type=float, default=0.15)
    p.add_argument("--mixed_precision", default="no")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name)
    raw = load_dataset("text", data_files={"train": args.train_file})["train"]
    tokenized = raw.map(lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True,
                        remove_columns=["text"])
    block = args.max_seq_length
    train = tokenized.map(group_texts_fn(block), batched=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability)
    loader = DataLoader(train, shuffle=True, batch_size=args.per_device_train_batch_size, collate_fn=collator, drop_last=True)

    config = AutoConfig.for_model("bert", vocab_size=len(tokenizer), hidden_size=args.hidden_size,
                                  num_hidden_layers=args.num_hidden_layers, num_attention_heads=args.num_attention_heads,
                                  intermediate_size=args.intermediate_size, max_position_embeddings=block,
                                  pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForMaskedLM.from_config(config)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.98), eps=1e-6)
    warmup = int(args.warmup_steps * args.max_steps) if args.warmup_steps < 1 else int(args.warmup_steps)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=warmup, num_training_steps=args.max_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    train_and_save(accelerator, model, optimizer, scheduler, loader, tokenizer, args.max_steps, args.output_dir)


if __name__ == "__main__":
    main()
