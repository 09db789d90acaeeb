"""Push an output folder (and, optionally, every checkpoint) to the Hugging Face Hub.

The token comes only from ``HF_TOKEN`` or the stored ``hf auth login``; it is never taken from a flag, so it
cannot end up in a saved config, an argument dump or a tracker, and every error message is scrubbed of it.
:func:`check_push_ready` runs before training so that a missing or rejected token fails in seconds, not after
hours of compute.

:func:`push_folder` creates the repo and uploads the folder in ONE commit through ``HfApi.create_commit`` (not
``upload_folder``, which splits large folders into several commits when ``hf_xet`` is installed). Network
failures and server errors (timeouts, 5xx, 429) are retried with exponential backoff; authentication and
permission errors are not, since retrying cannot fix them. Pushing only reads the local folder: whatever happens,
the local output is left exactly as it was.

:class:`CheckpointPusher` uploads intermediate checkpoints from a background thread so training never waits for
the network (``--hub_push_checkpoints``); :class:`PushCheckpointsCallback` plugs it into ``transformers.Trainer``.

Environment knobs (mainly for tests and slow links): ``HFSSL_HUB_TIMEOUT`` (seconds a single HTTP read/write may
stall, default 60), ``HFSSL_HUB_RETRIES`` (extra attempts after a transient failure, default 3),
``HFSSL_HUB_RETRY_WAIT`` (first backoff wait in seconds, doubled each attempt, default 5).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import get_session, validate_repo_id
from transformers import TrainerCallback

try:  # the HTTP library under huggingface_hub: httpx2 since 2.x, httpx in 1.x
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx

logger = logging.getLogger(__name__)

# Status codes worth retrying: request timeout, rate limit, server-side failures.
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# Local files never worth publishing: half-written checkpoints, staging copies, lock and probe files.
_SKIP_SUFFIXES = (".lock", ".tmp")
CHECKPOINTS_DIR = "checkpoints"
# Profiler output (`--profile_steps`): Chrome traces of hundreds of MB that describe one machine, not the model.
PROFILE_DIR = "profile"
_STAGING_PREFIX = ".hub-staging-"
_PUSH_LATER = ("drop --push_to_hub and push the finished folder later with "
               "`python recipes/push.py OUTPUT_DIR --hub_model_id ...`.")
T = TypeVar("T")


class HubError(RuntimeError):
    """Pushing to the Hub failed or cannot start; the local folder is left untouched.

    ``reason`` is the cause alone (e.g. "the Hub answered HTTP 500 ..."), without the advice around it.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError as err:
        raise HubError(f"{name}={value!r} is not a number; set it to a number of seconds or unset it.") from err


def redact_token(text: str) -> str:
    """Replace the configured Hub token in ``text`` by ``<redacted>``.

    Used on every error message (servers and proxies sometimes echo request headers) and on model cards (in
    case a recipe passes something holding the token by mistake).
    """
    try:
        token = get_token()
    except Exception:  # an unreadable token store or a failed OIDC exchange: there is no token to leak
        return text
    if token and len(token) >= 8:
        text = text.replace(token, "<redacted>")
    return text


def check_push_ready(push_to_hub: bool, hub_model_id: str | None) -> None:
    """Fail early, before any training, if ``--push_to_hub`` cannot succeed.

    Checks the repo id, that a token is configured, that offline mode is off, and asks the Hub (``whoami``)
    whether the token is valid and may write. All ranks may call it; it costs one small request.
    """
    if not push_to_hub:
        return
    if not hub_model_id:
        raise HubError("--push_to_hub needs --hub_model_id (e.g. your-name/your-model).")
    try:
        validate_repo_id(hub_model_id)
    except HFValidationError as err:
        raise HubError(f"--hub_model_id {hub_model_id!r} is not a valid Hub repo id ({err}). "
                       "Use your-name/model-name.") from err
    if constants.is_offline_mode():
        raise HubError(
            f"--push_to_hub was given but HF_HUB_OFFLINE is set, so nothing can be uploaded. Unset HF_HUB_OFFLINE, "
            f"or {_PUSH_LATER}"
        )
    if not get_token():
        raise HubError(
            "--push_to_hub needs a Hugging Face token: run `hf auth login` or set the HF_TOKEN environment "
            "variable (a token with write access), then start the run again."
        )
    timeout = _env_float("HFSSL_HUB_TIMEOUT", 60.0)
    try:
        me = _with_retries(lambda: HfApi().whoami(), what="Token check", timeout=timeout)
    except _Exhausted as failure:  # the run must not start either way; say why
        err = failure.error
        if _status(err) == 401:
            raise HubError(
                "The Hub rejected your token (401 Unauthorized). Create a token with write access at "
                "https://huggingface.co/settings/tokens, then `export HF_TOKEN=...` or run `hf auth login --force`."
            ) from None
        raise HubError(redact_token(f"Could not check your Hub token at {constants.ENDPOINT} before training: "
                                    f"{_explain(err, '', timeout)}. Check your connection, or {_PUSH_LATER}")) from None
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubError(
            "Your Hub token is read-only, so pushing would fail at the end of training. Create a token with write "
            "access at https://huggingface.co/settings/tokens and set HF_TOKEN to it (or `hf auth login --force`)."
        )


def files_to_push(folder: str | Path, *, include_checkpoints: bool = False) -> list[Path]:
    """Files of ``folder`` that a push uploads, relative to it, sorted.

    Skipped: hidden files and folders (``.tmp-*`` half-written checkpoints, staging copies, caches),
    ``*.lock``/``*.tmp`` files, profiler traces (``profile/``), and the resumable ``checkpoints/`` folder unless
    ``include_checkpoints``.
    """
    root = Path(folder)
    selected = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts) or path.name.endswith(_SKIP_SUFFIXES):
            continue
        if (rel.parts[0] == CHECKPOINTS_DIR and not include_checkpoints) or (len(rel.parts) > 1 and rel.parts[0] == PROFILE_DIR):
            continue
        selected.append(rel)
    return selected


def _set_http_timeout(seconds: float) -> None:
    """Bound how long one HTTP read/write may stall.

    huggingface_hub's shared client has no timeout, so a server that stops answering would hang the push
    forever. Requests that pass their own timeout (downloads) are not affected.
    """
    get_session().timeout = httpx.Timeout(seconds)


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(err: BaseException) -> bool:
    if isinstance(err, HfHubHTTPError):
        return _status(err) in _TRANSIENT_STATUS
    if isinstance(err, OfflineModeIsEnabled):
        return False
    return isinstance(err, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError,
                            ConnectionError, TimeoutError))


def _explain(err: BaseException, repo_id: str, timeout: float) -> str:
    status = _status(err)
    if status == 401:
        return ("the Hub rejected the token (401 Unauthorized). Set HF_TOKEN to a token with write access "
                "(https://huggingface.co/settings/tokens) or run `hf auth login --force`")
    if status == 403:
        return (f"the token may not write to {repo_id} (403 Forbidden). Use a namespace you own or an organisation "
                "where you have write access, and a token with write permission")
    if isinstance(err, HfHubHTTPError) and status is not None:
        request = getattr(err.response, "request", None)
        where = f" to {request.method} {request.url.path}" if request is not None else ""
        said = (err.server_message or "").strip().replace("\n", " ")
        return f"the Hub answered HTTP {status}{where}" + (f" ({said})" if said else "")
    if isinstance(err, httpx.TimeoutException):
        return f"the Hub did not answer within {timeout:g} s (timeout; raise HFSSL_HUB_TIMEOUT on a slow link)"
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set; unset it to push"
    return f"{type(err).__name__}: {err}"


def _push_once(api: HfApi, folder: Path, files: list[Path], repo_id: str, *, private: bool, revision: str | None,
               commit_message: str, path_in_repo: str) -> str:
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    prefix = path_in_repo.strip("/")
    operations = [  # rebuilt every attempt: create_commit mutates its operations
        CommitOperationAdd(path_in_repo=f"{prefix}/{rel.as_posix()}" if prefix else rel.as_posix(),
                           path_or_fileobj=str(folder / rel))
        for rel in files
    ]
    info = api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=revision)
    return str(info.commit_url)


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str = "Upload model trained with hfssl", path_in_repo: str = "",
                include_checkpoints: bool = False, run_as_future: bool = False,
                retries: int | None = None, retry_wait: float | None = None, timeout: float | None = None,
                ) -> str | Future[str]:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit; returns the commit URL.

    With ``run_as_future=True`` the push runs in a background thread and a ``Future`` is returned at once; its
    ``result()`` is the commit URL or raises :class:`HubError`. Transient failures are retried ``retries`` times
    with exponential backoff starting at ``retry_wait`` seconds; then :class:`HubError` says what went wrong and
    how to push again. The local folder is only read.
    """
    if run_as_future:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfssl-hub-push")
        future = executor.submit(push_folder, folder, repo_id, private=private, revision=revision,
                                 commit_message=commit_message, path_in_repo=path_in_repo,
                                 include_checkpoints=include_checkpoints, retries=retries,
                                 retry_wait=retry_wait, timeout=timeout)
        executor.shutdown(wait=False)  # the thread finishes the push, then exits
        return future

    folder = Path(folder)
    timeout = _env_float("HFSSL_HUB_TIMEOUT", 60.0) if timeout is None else timeout
    if not folder.is_dir():
        raise HubError(f"Cannot push {folder}: it is not a folder. Pass the output_dir of a finished run.")
    files = files_to_push(folder, include_checkpoints=include_checkpoints)
    if not files:
        raise HubError(f"Cannot push {folder}: it holds no files to upload "
                       "(hidden files and checkpoints/ are skipped).")

    api = HfApi()
    try:
        url = _with_retries(
            lambda: _push_once(api, folder, files, repo_id, private=private, revision=revision,
                               commit_message=commit_message, path_in_repo=path_in_repo),
            what=f"Push to {repo_id}", timeout=timeout, retries=retries, retry_wait=retry_wait)
    except _Exhausted as failure:
        tries = f" after {failure.attempts} attempts" if failure.attempts > 1 else ""
        reason = redact_token(_explain(failure.error, repo_id, timeout))
        raise HubError(f"Pushing {folder} to {repo_id} failed{tries}: {reason}. The local folder {folder} is "
                       f"unchanged; push it again with "
                       f"`python recipes/push.py {folder} --hub_model_id {repo_id}`.", reason=reason + tries) from None
    logger.info("Pushed %d files from %s to %s", len(files), folder, url)
    return url


class _Exhausted(Exception):
    """The last error of a call that failed for good, and how many attempts were made."""

    def __init__(self, error: BaseException, attempts: int):
        super().__init__(str(error))
        self.error, self.attempts = error, attempts


def _with_retries(call: Callable[[], T], *, what: str, timeout: float, retries: int | None = None,
                  retry_wait: float | None = None) -> T:
    """Run ``call``; retry network and server errors with exponential backoff, raise :class:`_Exhausted` at the end."""
    retries = int(_env_float("HFSSL_HUB_RETRIES", 3)) if retries is None else retries
    retry_wait = _env_float("HFSSL_HUB_RETRY_WAIT", 5.0) if retry_wait is None else retry_wait
    attempt = 0
    while True:
        attempt += 1
        _set_http_timeout(timeout)
        try:
            return call()
        except Exception as err:  # only network/server trouble is retried: a bad token or request stays bad
            if not _is_transient(err) or attempt > retries:
                raise _Exhausted(err, attempt) from err
            wait = retry_wait * 2 ** (attempt - 1)
            logger.warning("%s failed (%s); retry %d/%d in %.1f s", what, redact_token(_explain(err, "", timeout)),
                           attempt, retries, wait)
            time.sleep(wait)


class CheckpointPusher:
    """Upload checkpoints to the Hub from a background thread while training goes on.

    Call :meth:`push` on the main process right after ``save_checkpoint`` returns. The checkpoint's files are
    hard-linked (copied if the filesystem cannot link) into a hidden staging folder first, which takes
    milliseconds, so rotating away old checkpoints cannot pull files from under an upload in progress. Uploads
    run one at a time in commit order; if training saves faster than the network uploads, a checkpoint still
    waiting is replaced by the newer one. Each checkpoint becomes one commit under ``path_in_repo`` (so the
    repo's history holds every published checkpoint). A failed upload is logged and recorded, never raised into
    the training loop; :meth:`wait` at the end returns the commit URLs and, if asked, raises the first error, and
    :meth:`finish` (what recipes call) waits and reports failures on stderr without raising.
    """

    def __init__(self, repo_id: str, *, private: bool = False, revision: str | None = None,
                 path_in_repo: str = "last-checkpoint", push_fn: Callable[..., str] | None = None) -> None:
        self.repo_id = repo_id
        self.private = private
        self.revision = revision
        self.path_in_repo = path_in_repo
        self._push_fn = push_fn or push_folder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfssl-hub-checkpoints")
        self._lock = threading.Lock()
        self._pending: tuple[Future, Path] | None = None
        self._futures: list[Future] = []
        self.errors: list[HubError] = []
        self.skipped: list[str] = []

    def push(self, checkpoint_dir: str | Path, step: int | None = None) -> Future:
        """Queue ``checkpoint_dir`` for upload and return immediately with a Future of the commit URL."""
        checkpoint_dir = Path(checkpoint_dir)
        staging = _stage(checkpoint_dir)
        message = f"Checkpoint {checkpoint_dir.name}" + (f" (step {step})" if step is not None else "")
        with self._lock:
            if self._pending is not None and self._pending[0].cancel():  # not started yet: the newer one wins
                self.skipped.append(self._pending[1].name.removeprefix(_STAGING_PREFIX))
                shutil.rmtree(self._pending[1], ignore_errors=True)
                logger.warning("Hub upload of %s skipped: a newer checkpoint replaced it before it started.",
                               self._pending[1].name.removeprefix(_STAGING_PREFIX))
            future = self._executor.submit(self._upload, staging, message)
            self._pending = (future, staging)
            self._futures.append(future)
        return future

    def _upload(self, staging: Path, message: str) -> str | None:
        with self._lock:
            if self._pending is not None and self._pending[1] == staging:
                self._pending = None  # started: can no longer be replaced
        try:
            return self._push_fn(staging, self.repo_id, private=self.private, revision=self.revision,
                                 commit_message=message, path_in_repo=self.path_in_repo, include_checkpoints=True)
        except HubError as err:
            name = staging.name.removeprefix(_STAGING_PREFIX)
            logger.warning("Background Hub upload of checkpoint %s failed; training continues: %s", name, err.reason)
            self.errors.append(HubError(f"checkpoint {name}: {err.reason}", reason=err.reason))
            return None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def wait(self, raise_on_error: bool = False) -> list[str]:
        """Block until every queued upload has finished; returns the commit URLs of those that succeeded."""
        urls = []
        for future in list(self._futures):
            if future.cancelled():
                continue
            url = future.result()
            if url:
                urls.append(url)
        self._executor.shutdown(wait=True)
        if raise_on_error and self.errors:
            raise self.errors[0]
        return urls

    def finish(self) -> list[str]:
        """Wait for the uploads still running, then say on stderr which failed; never raises.

        Recipes call this once training is over and before the final push: a checkpoint that failed to upload
        must not cost the run, but the user has to learn that the Hub does not hold it.
        """
        urls = self.wait()
        if self.errors:
            failed = "; ".join(str(err) for err in self.errors)
            print(f"warning: {len(self.errors)} of {len(self.errors) + len(urls)} checkpoint uploads to {self.repo_id} "
                  f"failed ({failed}). Training was not affected and no local file was changed; to publish the "
                  f"checkpoints still on disk, run `python recipes/push.py OUTPUT_DIR --hub_model_id {self.repo_id} "
                  f"--include_checkpoints`.", file=sys.stderr, flush=True)
        return urls


class PushCheckpointsCallback(TrainerCallback):
    """``--hub_push_checkpoints`` for the Trainer recipes: each ``checkpoint-N`` the Trainer saves goes to a
    :class:`CheckpointPusher`.

    Trainer's own ``hub_strategy="checkpoint"`` is not used on purpose: it would push the Trainer's model card over
    hfssl's, make a second final commit, and skip hfssl's retries, token scrubbing and end-of-run failure report.
    With this callback the flag behaves the same in every recipe (checkpoints under ``last-checkpoint/``).
    """

    def __init__(self, pusher: CheckpointPusher) -> None:
        self.pusher = pusher

    def on_save(self, args, state, control, **kwargs):
        # Called after the Trainer has written (and rotated) its checkpoints, on every rank: upload once.
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            self.pusher.push(folder, step=state.global_step)


def _stage(checkpoint_dir: Path) -> Path:
    """Hard-link (or copy) a checkpoint into a hidden sibling folder that the upload owns."""
    if not checkpoint_dir.is_dir():
        raise HubError(f"Cannot push checkpoint {checkpoint_dir}: it is not a folder.")
    staging = checkpoint_dir.parent / f"{_STAGING_PREFIX}{checkpoint_dir.name}"
    if staging.exists():
        shutil.rmtree(staging)
    for source in sorted(checkpoint_dir.rglob("*")):
        target = staging / source.relative_to(checkpoint_dir)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # other filesystem or no hard-link support: a copy is still correct, only slower
            shutil.copy2(source, target)
    return staging
