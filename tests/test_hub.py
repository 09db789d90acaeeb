"""The real push code (huggingface_hub's HTTP calls included) against a local fake Hub on 127.0.0.1.

Covers: one commit with every file byte-identical (inline and LFS paths), branches, the pre-training token
check, 401/500/timeout errors with the local folder unchanged, retries, background pushes, checkpoint pushes that
survive checkpoint rotation, recipes/push.py, and a real recipe run (checkpoints pushed in the background too) whose
outputs, logs and uploads never contain the token. Every other recipe: tests/test_recipes_hub.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants

from fake_hub import FakeHub
from hfssl.hub import CheckpointPusher, HubError, check_push_ready, files_to_push, push_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_test_7c1e9b2a54d84f0e"  # unique so a leak anywhere is found by a plain substring search


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 and mtime of every file, hidden ones included: any change to the local folder shows up here."""
    return {p.relative_to(folder).as_posix(): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def output_folder(tmp_path: Path) -> Path:
    """A folder shaped like a recipe's output: weights, card, nested files, checkpoints and junk to skip."""
    out = tmp_path / "out"
    (out / "tokenizer").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(os.urandom(50_000))
    (out / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (out / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n\n# test model\n")
    (out / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    (out / "empty.txt").write_bytes(b"")
    (out / "checkpoints" / "step_00000010").mkdir(parents=True)
    (out / "checkpoints" / "step_00000010" / "optimizer.bin").write_bytes(os.urandom(1000))
    (out / "checkpoints" / ".tmp-step_00000020").mkdir()
    (out / "checkpoints" / ".tmp-step_00000020" / "partial.bin").write_bytes(b"half")
    (out / ".hfssl-write-test").write_text("probe")
    (out / "profile").mkdir()  # --profile_steps output: a trace of this machine, not part of the model
    (out / "profile" / "trace.json").write_text('{"traceEvents": []}')
    return out


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub that accepts TOKEN, with huggingface_hub pointed at it and retries/timeouts kept short."""
    with FakeHub(tokens={TOKEN: "write"}) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HFSSL_HUB_RETRY_WAIT", "0.05")
        monkeypatch.setenv("HFSSL_HUB_TIMEOUT", "5")
        yield server


def test_push_uploads_every_file_byte_identical_in_one_commit(hub, output_folder):
    before = tree_hashes(output_folder)
    url = push_folder(output_folder, "tester/model", private=True)

    assert url.startswith(hub.url) and len(hub.commits) == 1
    pushed = hub.files("tester/model")
    expected = {rel.as_posix() for rel in files_to_push(output_folder)}
    assert set(pushed) == expected == {"model.safetensors", "config.json", "README.md", "tokenizer/tokenizer.json", "empty.txt"}
    for path, data in pushed.items():
        assert data == (output_folder / path).read_bytes(), path
    assert hub.repos["tester/model"].private
    assert tree_hashes(output_folder) == before


def test_push_to_branch_and_with_checkpoints(hub, output_folder):
    push_folder(output_folder, "tester/model", revision="experiment-1", include_checkpoints=True)

    pushed = hub.files("tester/model", branch="experiment-1")
    assert pushed["checkpoints/step_00000010/optimizer.bin"] == (output_folder / "checkpoints/step_00000010/optimizer.bin").read_bytes()
    assert not any(".tmp-" in path for path in pushed)  # half-written checkpoints are never published
    assert hub.files("tester/model", branch="main") == {}


def test_lfs_upload_path_is_byte_identical(monkeypatch, tmp_path, output_folder):
    # Large files go through the LFS protocol on the real Hub; with Xet disabled huggingface_hub uses LFS "basic".
    with FakeHub(tokens={TOKEN: "write"}, lfs_threshold=10_000) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        push_folder(output_folder, "tester/lfs-model")
        assert server.count("lfs_put") == 1
        assert server.files("tester/lfs-model")["model.safetensors"] == (output_folder / "model.safetensors").read_bytes()


def test_rejected_token_gives_clear_error_without_retry(hub, output_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_0000")
    before = tree_hashes(output_folder)
    with pytest.raises(HubError) as info:
        push_folder(output_folder, "tester/model", retries=3)
    message = str(info.value)
    assert "401" in message and "HF_TOKEN" in message and "recipes/push.py" in message
    assert hub.count("create") == 1  # retrying cannot fix a bad token
    assert tree_hashes(output_folder) == before


def test_server_error_is_retried_then_succeeds(hub, output_folder):
    hub.fail("commit", status=500, times=2)
    push_folder(output_folder, "tester/model", retries=3)
    assert hub.count("commit") == 3 and len(hub.commits) == 1
    assert hub.files("tester/model")["model.safetensors"] == (output_folder / "model.safetensors").read_bytes()


def test_persistent_server_error_gives_clear_error_and_keeps_folder(hub, output_folder):
    hub.fail("commit", status=500, times=10)
    before = tree_hashes(output_folder)
    with pytest.raises(HubError) as info:
        push_folder(output_folder, "tester/model", retries=2)
    message = str(info.value)
    assert "after 3 attempts" in message and "HTTP 500" in message and "unchanged" in message
    assert hub.count("commit") == 3 and hub.commits == []
    assert tree_hashes(output_folder) == before


def test_stalled_server_times_out_with_clear_error(hub, output_folder):
    hub.fail("commit", stall_s=20, times=5)  # without the client timeout the stall would end and the push succeed
    before = tree_hashes(output_folder)
    with pytest.raises(HubError) as info:
        push_folder(output_folder, "tester/model", retries=1, timeout=0.5)
    assert "did not answer within 0.5 s" in str(info.value) and "after 2 attempts" in str(info.value)
    assert tree_hashes(output_folder) == before


def test_token_echoed_by_server_is_scrubbed_from_errors(hub, output_folder, caplog):
    hub.fail("commit", status=500, times=3, message=f"bad header Authorization: Bearer {TOKEN}")
    with pytest.raises(HubError) as info:
        push_folder(output_folder, "tester/model", retries=1)
    assert TOKEN not in str(info.value) and "<redacted>" in str(info.value)
    assert TOKEN not in caplog.text


def test_check_push_ready_fails_before_training(hub, monkeypatch):
    check_push_ready(False, None)  # not pushing: nothing to check, no request
    assert hub.calls == []
    check_push_ready(True, "tester/model")
    assert hub.count("whoami") == 1

    with pytest.raises(HubError, match="hub_model_id"):
        check_push_ready(True, None)
    with pytest.raises(HubError, match="not a valid Hub repo id"):
        check_push_ready(True, "tester/bad name!")

    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_0000")
    with pytest.raises(HubError, match="401"):
        check_push_ready(True, "tester/model")

    hub.tokens["hf_read_only_token_1"] = "read"
    monkeypatch.setenv("HF_TOKEN", "hf_read_only_token_1")
    with pytest.raises(HubError, match="read-only"):
        check_push_ready(True, "tester/model")

    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="hf auth login"):
        check_push_ready(True, "tester/model")

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        check_push_ready(True, "tester/model")


def test_check_push_ready_retries_a_brief_outage_then_fails_clearly(hub):
    hub.fail("whoami", status=503, times=1)
    check_push_ready(True, "tester/model")  # one 503, then the retry succeeds
    assert hub.count("whoami") == 2
    hub.fail("whoami", status=500, times=10)
    with pytest.raises(HubError, match="Could not check your Hub token.*HTTP 500.*recipes/push.py"):
        check_push_ready(True, "tester/model")


def wait_until(condition, what: str, limit_s: float = 60.0) -> None:
    """Poll ``condition`` (a synchronisation point for background threads, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_run_as_future_does_not_block(hub, output_folder):
    hub.fail("commit", stall_s=60)  # the server holds the commit until released
    future = push_folder(output_folder, "tester/model", run_as_future=True)
    wait_until(lambda: hub.count("commit") == 1, "the commit request")
    assert not future.done() and hub.commits == []  # returned while the upload is still in flight
    hub.release()
    assert future.result(timeout=30).startswith(hub.url)
    assert set(hub.files("tester/model")) == {rel.as_posix() for rel in files_to_push(output_folder)}


def test_checkpoint_pusher_survives_rotation_and_publishes_latest(hub, output_folder, tmp_path):
    ckpt_root = output_folder / "checkpoints"
    first = ckpt_root / "step_00000010"
    contents = {}
    hub.fail("commit", stall_s=60)  # the server holds the first upload until released: training goes on meanwhile
    pusher = CheckpointPusher("tester/model")
    pusher.push(first, step=10)
    contents[10] = (first / "optimizer.bin").read_bytes()
    wait_until(lambda: hub.count("commit") == 1, "the first checkpoint's commit request")
    for step in (20, 30):  # saved while the first upload is still running; 20 waits, then 30 replaces it
        folder = ckpt_root / f"step_{step:08d}"
        folder.mkdir()
        (folder / "optimizer.bin").write_bytes(os.urandom(500))
        (folder / "hfssl_progress.json").write_text(json.dumps({"step": step}))
        contents[step] = (folder / "optimizer.bin").read_bytes()
        pusher.push(folder, step=step)
    assert hub.commits == []  # every push() returned while the first upload is still held by the server
    shutil.rmtree(first)  # checkpoint rotation deletes step 10 while it is being uploaded
    hub.release()

    urls = pusher.wait(raise_on_error=True)
    assert len(urls) == 2 and pusher.skipped == ["step_00000020"]
    assert [c.message for c in hub.commits] == ["Checkpoint step_00000010 (step 10)", "Checkpoint step_00000030 (step 30)"]
    assert hub.commits[0].files["last-checkpoint/optimizer.bin"] == contents[10]
    assert hub.files("tester/model")["last-checkpoint/optimizer.bin"] == contents[30]
    assert not any(p.name.startswith(".hub-staging") for p in ckpt_root.iterdir())  # staging copies cleaned up


def test_checkpoint_pusher_records_failures_without_raising(hub, output_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_0000")
    pusher = CheckpointPusher("tester/model")
    future = pusher.push(output_folder / "checkpoints" / "step_00000010", step=10)
    assert future.result(timeout=30) is None  # the training loop never sees the exception
    assert len(pusher.errors) == 1
    with pytest.raises(HubError, match="401"):
        pusher.wait(raise_on_error=True)


def test_push_script(hub, output_folder, capsys):
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    try:
        import push as push_script
    finally:
        sys.path.pop(0)

    assert push_script.main([str(output_folder), "--hub_model_id", "tester/model", "--dry_run"]) == 0
    assert hub.calls == [] and "model.safetensors" in capsys.readouterr().out
    assert push_script.main([str(output_folder / "missing"), "--hub_model_id", "tester/model"]) == 2
    assert push_script.main([str(output_folder), "--hub_model_id", "tester/model", "--hub_revision", "v1"]) == 0
    assert "Pushed:" in capsys.readouterr().out
    assert hub.files("tester/model", "v1")["model.safetensors"] == (output_folder / "model.safetensors").read_bytes()
    hub.fail("commit", status=503, times=10)
    assert push_script.main([str(output_folder), "--hub_model_id", "tester/model"]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    (output_folder / "README.md").write_text("---\nlicense: [unclosed\n---\n# broken\n")
    calls = len(hub.calls)
    assert push_script.main([str(output_folder), "--hub_model_id", "tester/model"]) == 2
    assert "invalid metadata" in capsys.readouterr().err and len(hub.calls) == calls


def free_port() -> int:
    """A free TCP port, so concurrent torchrun jobs on the machine do not collide on the default 29500."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_process_group(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session; on timeout kill the whole group (torchrun's workers too), then fail."""
    import signal

    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} ... timed out after {timeout} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _recipe_env(hub_url: str | None, token: str | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               HFSSL_HUB_RETRY_WAIT="0.05", HFSSL_HUB_TIMEOUT="10", PYTHONPATH=str(REPO_ROOT))
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
    if token:
        env["HF_TOKEN"] = token
    return env


TINY_MLM = ["--max_steps", "12", "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
            "--intermediate_size", "64", "--max_seq_length", "32", "--vocab_size", "300", "--per_device_train_batch_size", "8",
            "--logging_steps", "3", "--eval_steps", "0", "--checkpointing_steps", "6", "--max_eval_samples", "50",
            "--report_to", "tensorboard"]


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    from hfssl.data.offline_corpus import bible_corpus

    path = tmp_path / "train.txt"
    path.write_text("\n".join(bible_corpus().read_text(encoding="utf-8").splitlines()[:1500]), encoding="utf-8")
    return path


def test_recipe_push_never_leaks_the_token(tmp_path, tiny_corpus):
    if not (REPO_ROOT / "recipes" / "mlm.py").is_file():
        pytest.skip("recipes/mlm.py is not in this checkout")
    token = "hf_LeakCanary_5d41402abc4b2a76b9719d91"
    out = tmp_path / "out"
    with FakeHub(tokens={token: "write"}) as server:
        proc = subprocess.run(
            [sys.executable, "recipes/mlm.py", "--train_file", str(tiny_corpus), "--output_dir", str(out), *TINY_MLM,
             "--push_to_hub", "--hub_model_id", "tester/tiny-mlm", "--hub_push_checkpoints"],
            cwd=REPO_ROOT, env=_recipe_env(server.url, token, tmp_path), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        pushed = server.files("tester/tiny-mlm")
        messages = [commit.message for commit in server.commits]
        wire = b"".join(server.bodies)

    # Everything written locally (model, card, config dump, tracker logs, checkpoints), the run's own logs,
    # and everything sent to the Hub except the Authorization header.
    local_files = [p for p in out.rglob("*") if p.is_file()]
    assert any("tfevents" in p.name for p in local_files) and (out / "hfssl_config.yaml").is_file()
    for path in local_files:
        assert token.encode() not in path.read_bytes(), path
    assert token not in proc.stdout and token not in proc.stderr
    assert token.encode() not in wire
    for path, data in pushed.items():
        assert token.encode() not in data, path

    # Checkpoints went up in the background (step 12's last, under last-checkpoint/), then the final folder.
    assert messages[-1] == "Upload model trained with hfssl" and messages[-2] == "Checkpoint step_00000012 (step 12)"
    newest = out / "checkpoints" / "step_00000012"
    assert {p: d for p, d in pushed.items() if p.startswith("last-checkpoint/")} == {
        f"last-checkpoint/{p.relative_to(newest).as_posix()}": p.read_bytes() for p in newest.rglob("*") if p.is_file()}
    pushed = {p: d for p, d in pushed.items() if not p.startswith("last-checkpoint/")}

    # The push itself: every published file equals the local one, and the card's metadata parses.
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json", "training_loss.png"} <= set(pushed)
    for path, data in pushed.items():
        assert data == (out / path).read_bytes(), path
    assert not any(path.startswith("checkpoints/") for path in pushed)
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "fill-mask" and card.data.library_name == "transformers"

    # What was published loads with one call: rebuild the repo from the received bytes and run the card's snippet.
    clone = tmp_path / "clone"
    for path, data in pushed.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_bytes(data)
    snippet = re.search(r"```python\n(.*?)```", card.text, flags=re.DOTALL).group(1)
    assert '"tester/tiny-mlm"' in snippet
    namespace: dict = {}
    exec(compile(snippet.replace('"tester/tiny-mlm"', repr(str(clone))), "<card snippet>", "exec"), namespace)  # noqa: S102
    assert type(namespace["model"]).__name__.endswith("ForMaskedLM")


def test_checkpoint_pusher_with_real_accelerate_checkpoints(hub, tmp_path):
    """Wired as a recipe would: save_checkpoint (rotating, keep=1) then push; the Hub gets exact checkpoints."""
    import torch
    from accelerate import Accelerator

    from hfssl.checkpointing import list_checkpoints, save_checkpoint

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    pusher = CheckpointPusher("tester/run")
    snapshots = []
    for step in (1, 2, 3):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        path = save_checkpoint(accelerator, tmp_path, step, {"epoch": 0}, keep=1)
        snapshots.append({f"last-checkpoint/{p.relative_to(path).as_posix()}": p.read_bytes()
                          for p in path.rglob("*") if p.is_file()})
        pusher.push(path, step=step)
    assert pusher.wait(raise_on_error=True)
    assert list_checkpoints(tmp_path) == [tmp_path / "checkpoints" / "step_00000003"]  # rotation ran meanwhile
    assert all(commit.files in snapshots for commit in hub.commits)  # each commit is one exact checkpoint
    assert hub.files("tester/run") == snapshots[-1]
    assert "last-checkpoint/model.safetensors" in snapshots[-1] and "last-checkpoint/hfssl_progress.json" in snapshots[-1]


def test_recipe_multi_process_pushes_once(tmp_path, tiny_corpus):
    """torchrun with 2 CPU processes: every rank checks the token before training, only the main one pushes."""
    if not (REPO_ROOT / "recipes" / "mlm.py").is_file():
        pytest.skip("recipes/mlm.py is not in this checkout")
    out = tmp_path / "out"
    with FakeHub(tokens={TOKEN: "write"}) as server:
        env = _recipe_env(server.url, TOKEN, tmp_path)
        env["ACCELERATE_USE_CPU"] = "1"  # without it Accelerate ignores torchrun's env on a machine with no GPU
        proc = run_process_group(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
             "recipes/mlm.py", "--train_file", str(tiny_corpus), "--output_dir", str(out), *TINY_MLM,
             "--push_to_hub", "--hub_model_id", "tester/tiny-mlm"], env=env, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.count("whoami") == 2 and len(server.commits) == 1
        assert server.files("tester/tiny-mlm")["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert TOKEN not in proc.stdout + proc.stderr
