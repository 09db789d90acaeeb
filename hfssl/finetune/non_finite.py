"""Stop a ``transformers.Trainer`` run at the first non-finite loss, before it can write a NaN checkpoint.

The Trainer's default is to log ``nan`` and keep going: every later step, checkpoint and "best model" is then
garbage, and with ``save_total_limit`` the last good checkpoints get rotated away. :class:`StopOnNonFiniteLoss`
raises :class:`~hfssl.checkpointing.NonFiniteLossError` instead, so the newest checkpoint on disk is the last
good one and ``--resume_from_checkpoint latest`` (with a lower learning rate) continues from it.

Callbacks never see the per-step loss, so two checks cover it:

- ``on_step_end`` runs after ``DefaultFlowCallback`` has decided whether this step logs, evaluates or saves, and
  before the Trainer does any of it. On those steps the weights are checked: a NaN or infinite loss turns every
  weight it touches into NaN through its gradient (gradient clipping divides by a NaN norm), so a non-finite
  weight is how a bad loss shows at that point. This is what guarantees no NaN checkpoint is written.
- ``on_log`` checks the logged training loss (the mean since the last log), which names the problem directly.
"""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback

from ..checkpointing import NonFiniteLossError


class StopOnNonFiniteLoss(TrainerCallback):
    """Raise :class:`NonFiniteLossError` when the loss (or, from it, a weight) becomes NaN or infinite."""

    def __init__(self, fix: str = "Lower --learning_rate or use --mixed_precision no") -> None:
        self.fix = fix

    def _stop(self, what: str, step: int, args) -> None:
        raise NonFiniteLossError(
            f"{what} at step {step}; stopped before saving anything from it. {self.fix}, then rerun with "
            f"--resume_from_checkpoint latest to continue from the last good checkpoint in {args.output_dir}.")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and (control.should_save or control.should_evaluate or control.should_log):
            with torch.no_grad():
                bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
            if bad:
                self._stop(f"Training loss became non-finite: weights such as {bad[0]} are NaN or infinite",
                           state.global_step, args)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self._stop(f"Training loss is {loss}", state.global_step, args)
        return control
