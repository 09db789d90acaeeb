"""Masked image modelling (MAE) on transformers' ``ViTMAEForPreTraining``: config, model and encoder export."""
