"""Causal (next-token) language-model pretraining: GPT-2-style models, their objective and evaluation."""
