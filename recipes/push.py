"""Push a finished hfssl output folder to the Hugging Face Hub.

    python recipes/push.py outputs/my-bert --hub_model_id your-name/my-bert [--hub_private_repo] \
        [--hub_revision BRANCH] [--include_checkpoints] [--dry_run]

Use it when a run was trained without --push_to_hub, or when the push at the end of training failed (the local
folder is never changed by a failed push, so running this again is always safe). The folder goes up in one
commit; the resumable ``checkpoints/`` state stays local unless --include_checkpoints. The token comes only from
HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from huggingface_hub import ModelCard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from hfssl.hub import HubError, check_push_ready, files_to_push, push_folder  # noqa: E402

# What a folder needs to load with one call; missing pieces are reported, not fatal (a word-embedding folder
# has no config.json, for instance).
EXPECTED = {"README.md": "model card", "*.safetensors": "weights"}
UNSAFE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", help="Folder written by an hfssl recipe.")
    parser.add_argument("--hub_model_id", required=True, help="Hub repo id, e.g. your-name/my-bert.")
    parser.add_argument("--hub_private_repo", action="store_true", help="Create the repo as private.")
    parser.add_argument("--hub_revision", default=None, help="Branch to push to (created if missing).")
    parser.add_argument("--commit_message", default="Upload model trained with hfssl")
    parser.add_argument("--include_checkpoints", action="store_true",
                        help="Also upload checkpoints/ (optimizer and RNG state, to resume elsewhere).")
    parser.add_argument("--dry_run", action="store_true", help="List what would be uploaded and stop.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = Path(args.output_dir)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder. Pass the output_dir of a finished run.", file=sys.stderr)
        return 2

    files = files_to_push(folder, include_checkpoints=args.include_checkpoints)
    total = sum((folder / rel).stat().st_size for rel in files)
    print(f"{len(files)} files, {total / 1e6:.1f} MB from {folder} -> {args.hub_model_id}"
          + (f" (branch {args.hub_revision})" if args.hub_revision else ""))
    for rel in files:
        print(f"  {rel.as_posix()}")
    for pattern, what in EXPECTED.items():
        if not any(rel.match(pattern) for rel in files):
            print(f"warning: no {pattern} ({what}) in {folder}; is this a finished hfssl output folder?", file=sys.stderr)
    pickled = [rel.as_posix() for rel in files if rel.parts[0] != "checkpoints" and any(rel.match(p) for p in UNSAFE_WEIGHTS)]
    if pickled:
        print(f"warning: pickle-based files {pickled} will be uploaded; hfssl saves weights as safetensors.", file=sys.stderr)
    if (folder / "README.md").is_file():
        try:  # the Hub rejects a commit whose README.md metadata does not parse; say so before uploading
            ModelCard.load(folder / "README.md")
        except Exception as err:  # yaml and validation errors have no common base class
            print(f"error: {folder / 'README.md'} has invalid metadata ({err}). Fix its YAML header first.", file=sys.stderr)
            return 2
    if args.dry_run:
        return 0

    try:
        check_push_ready(True, args.hub_model_id)
        url = push_folder(folder, args.hub_model_id, private=args.hub_private_repo, revision=args.hub_revision,
                          commit_message=args.commit_message, include_checkpoints=args.include_checkpoints)
    except HubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Pushed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
