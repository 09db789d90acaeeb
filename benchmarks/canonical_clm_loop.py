"""The peer for benchmarks/clm_throughput.py: the canonical transformers causal-LM training loop.

What a user of the transformers examples runs (run_clm_no_trainer.py): lines tokenized, concatenated and cut into
blocks (``group_texts``), batches built by ``DataCollatorForLanguageModeling(mlm=False)`` (labels = inputs, the
model shifts them), ``AutoModelForCausalLM`` called with ``labels``, AdamW with a schedule, a plain Accelerate
loop. Written here from that description; it shares no code with hfssl's recipe so that the comparison is with
what users would otherwise run. One deliberate difference from run_clm: each line is followed by the end-of-text
token, so both trainers see exactly the same token stream (hfssl separates documents that way).
"""

from __future__ import annotations

import argparse

import torch
from accelerate import Accelerator
from datasets import load_dataset
from torch.utils.data import DataLoader
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling,
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
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--weight_decay", type=float, default=0.1)
    p.add_argument("--adam_beta2", type=float, default=0.95)
    p.add_argument("--lr_scheduler_type", default="cosine")
    p.add_argument("--warmup_steps", type=float, default=0.05)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--num_attention_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=1024)
    p.add_argument("--mixed_precision", default="no")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name)
    raw = load_dataset("text", data_files={"train": args.train_file})["train"]
    eos = tokenizer.eos_token_id
    tokenized = raw.map(lambda b: {"input_ids": [ids + [eos] for ids in tokenizer(
                            [t for t in b["text"] if t.strip()])["input_ids"]]},
                        batched=True, remove_columns=["text"])
    block = args.max_seq_length
    train = tokenized.map(group_texts_fn(block), batched=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    loader = DataLoader(train, shuffle=True, batch_size=args.per_device_train_batch_size, collate_fn=collator, drop_last=True)

    config = AutoConfig.for_model("gpt2", vocab_size=len(tokenizer), n_positions=block, n_embd=args.hidden_size,
                                  n_layer=args.num_hidden_layers, n_head=args.num_attention_heads,
                                  n_inner=args.intermediate_size, bos_token_id=eos, eos_token_id=eos,
                                  pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_config(config)
    no_decay = ("bias", "ln_")
    groups = [{"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": args.weight_decay},
              {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, args.adam_beta2))
    warmup = int(args.warmup_steps * args.max_steps) if args.warmup_steps < 1 else int(args.warmup_steps)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=args.max_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    train_and_save(accelerator, model, optimizer, scheduler, loader, tokenizer, args.max_steps, args.output_dir)


if __name__ == "__main__":
    main()
