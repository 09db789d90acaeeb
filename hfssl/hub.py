"""Push an output folder to the Hugging Face Hub.

The token comes only from ``HF_TOKEN`` or the stored ``hf auth login``; it is never taken from a flag, so it
cannot end up in a saved config, an argument dump or a tracker. :func:`check_push_ready` runs before training
so that a missing token fails in seconds, not after hours of compute.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, get_token


class HubError(RuntimeError):
    """Pushing to the Hub failed or cannot start; the local folder is left untouched."""


def check_push_ready(push_to_hub: bool, hub_model_id: str | None) -> None:
    """Fail early, before any training, if ``--push_to_hub`` cannot succeed."""
    if not push_to_hub:
        return
    if not hub_model_id:
        raise HubError("--push_to_hub needs --hub_model_id (e.g. your-name/your-model).")
    if not get_token():
        raise HubError(
            "--push_to_hub needs a Hugging Face token: run `hf auth login` or set the HF_TOKEN environment "
            "variable (a token with write access), then start the run again."
        )


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str = "Upload model trained with hfssl") -> str:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit; returns the commit URL."""
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            revision=revision,
            commit_message=commit_message,
            ignore_patterns=["checkpoints/*", "runs/*", "*.tmp*"],
        )
    except Exception as err:  # network, auth and server errors all end the same way for the user
        raise HubError(f"Pushing {folder} to {repo_id} failed: {err}. The local folder is intact; retry with "
                       f"`python recipes/push.py {folder} --hub_model_id {repo_id}`.") from err
    return str(info)
