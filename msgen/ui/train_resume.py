"""Train tab, *Your runs*: runs that outlive the machine (download / upload / Hub), resumable.

A free Space's disk is wiped on every restart. So a run can leave as a resumable zip (its
state, data snapshot, model and ``run.json``: ``msgen.runzip``) and come back through Gradio's
own upload component, or go to a Hub repo with its full state and come back from there; either
way it is checked as untrusted input, lands in the visitor's own runs folder under a fresh
name, and resumes with its step count, optimiser, EMA and random streams. ``layout()`` adds the
controls inside the accordion; ``wire()`` connects them once the tab's shared state exists.
The handlers are plain functions of plain values, tested without a browser.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from .. import runzip
from ..run import Run
from . import common, runs, validate
from .jobs import JobManager

def _owned_run(ctx: common.AppContext, run_name: str | None, owner: str | None) -> Path:
    return runs.run_dir_of(ctx.owner_dir(owner), run_name)


def download_run(ctx: common.AppContext, manager: JobManager, run_name: str | None, owner: str | None) -> str:
    """A resumable zip of the visitor's run; raises ``gr.Error`` with the reason."""
    try:
        run_dir = _owned_run(ctx, run_name, owner)
        if run_dir.resolve() in manager.busy_run_dirs():
            raise ValueError(f"{run_dir.name} is training; stop it (its last checkpoint is kept) or let it finish")
        runs._sweep_downloads()
        return str(runzip.pack(run_dir, runs.DOWNLOADS / secrets.token_hex(8) / f"{run_dir.name}-run.zip"))
    except (ValueError, OSError) as exc:
        raise gr.Error(f"Cannot download the run: {exc}") from None


def _upload_path(upload: Any) -> Path:
    """The one file Gradio's upload component stored for this request."""
    items = upload if isinstance(upload, (list, tuple)) else [upload] if upload else []
    if len(items) != 1:
        raise ValueError("upload one run zip (made by Download run) first")
    item = items[0]
    return Path(str(getattr(item, "path", None) or getattr(item, "name", None) or item))


def _room(ctx: common.AppContext, manager: JobManager, owner: str | None) -> Path:
    from .train_limits import check_disk

    root = ctx.owner_dir(owner)
    if manager.active_count(ctx.owner_key(owner)) >= (1 if ctx.shared else 8):
        raise ValueError("you already have a run training or in line; stop it or wait for it to finish")
    ctx.expire_sessions(keep=manager.busy_run_dirs())
    check_disk(ctx, root)  # an imported run is a kept run: the same quotas as a new one
    root.mkdir(parents=True, exist_ok=True)
    return root


def _dest(ctx: common.AppContext, root: Path, owner: str | None) -> Callable[[str], Path]:
    shipped = {e.name for e in ctx.models(owner) if e.source == "shipped"}
    return lambda name: runs.new_run_dir(root, name, taken=shipped)


def _limits(ctx: common.AppContext) -> runzip.ArchiveLimits:
    return runzip.SHARED_LIMITS if ctx.shared else runzip.LIMITS


def _goal(run_dir: Path, until: Any) -> tuple[int, int]:
    run = Run(run_dir)
    step, steps = run.step(), run.record().steps
    if until not in (None, ""):
        try:
            steps = int(float(until))
        except (TypeError, ValueError):
            raise ValueError("train until step must be a whole number") from None
    return step, steps


def _continue(ctx: common.AppContext, manager: JobManager, run_dir: Path, until: Any, owner: str | None,
              how: str, client: str = "") -> tuple[str | None, str]:
    from . import train as tab  # the tab's own Resume: the same bounds and checks as any resume

    step, goal = _goal(run_dir, until)
    if goal <= step:
        return None, (f"**{run_dir.name}** {how} at step {step}, its goal; it is listed under *Your runs* and in "
                      "Generate. Ask for more steps to continue it.")
    job_id, text = tab.resume(ctx, manager, run_dir.name, goal, owner, client)
    if job_id is None:
        return None, (f"**{run_dir.name}** {how} at step {step} and listed under *Your runs*, but not resumed: "
                      f"{text.replace('**Cannot resume:** ', '')}")
    return job_id, f"**{run_dir.name}** {how}: resuming from step {step}, towards step {goal}."


def resume_zip(ctx, manager: JobManager, upload, until, owner, client: str = "") -> tuple[str | None, str, str | None]:
    """Upload -> checked run in the visitor's folder -> resumed; (job id, status, run name)."""
    run_dir = None
    try:
        root = _room(ctx, manager, owner)
        run_dir = runzip.unpack_zip(_upload_path(upload), root, dest=_dest(ctx, root, owner), limits=_limits(ctx))
        job_id, text = _continue(ctx, manager, run_dir, until, owner, "uploaded", client)
    except (ValueError, OSError, KeyError) as exc:  # RunArchiveError is a ValueError
        return None, f"**Cannot resume from this zip:** {exc}", run_dir.name if run_dir else None
    return job_id, text, run_dir.name


def resume_hub(ctx, manager: JobManager, repo_id, token, until, owner, client: str = "") -> tuple[str | None, str, str | None]:
    run_dir = None
    try:
        root = _room(ctx, manager, owner)
        run_dir = runzip.fetch_run(validate.text(repo_id, "repo id", 200).strip(), root,
                                   token=validate.text(token, "token", 400).strip() or None,
                                   dest=_dest(ctx, root, owner), limits=_limits(ctx), use_server_login=not ctx.shared)
        job_id, text = _continue(ctx, manager, run_dir, until, owner, f"fetched from {repo_id.strip()}", client)
    except (ValueError, OSError, KeyError) as exc:
        return None, f"**Cannot resume from the Hub:** {exc}", run_dir.name if run_dir else None
    return job_id, text, run_dir.name


def push_run(ctx, manager: JobManager, run_name, repo_id, token, private, owner) -> str:
    try:
        run_dir = _owned_run(ctx, run_name, owner)
        if run_dir.resolve() in manager.busy_run_dirs():
            raise ValueError(f"{run_dir.name} is training; push it once it has stopped or finished")
        token = validate.text(token, "token", 400).strip() or None
        if token is None and ctx.shared:  # never the server's own credential for a stranger's push
            raise ValueError("give your Hugging Face token (write access); this server pushes with yours only")
        url = runzip.push_run(run_dir, validate.text(repo_id, "repo id", 200).strip(), token=token,
                              private=bool(private), use_server_login=not ctx.shared)
    except (ValueError, OSError) as exc:
        return f"**Run not pushed:** {exc}. The local run is unchanged."
    return f"Run pushed with its full state to {url}; *Resume from a Hub repo* continues it on any machine."


# --- layout and wiring -------------------------------------------------------------------------
def layout() -> dict[str, Any]:
    """The controls, placed inside the *Your runs* accordion."""
    gr.Markdown("**Keep a run beyond this machine** (a free Space's disk is wiped on restart): the resumable zip "
                "and the Hub push carry the run's state, training images and model; either comes back here, "
                "checked like any upload, and continues where it stopped.")
    ui: dict[str, Any] = {}
    with gr.Row():
        ui["download_btn"] = gr.Button("Download run (resumable)", elem_id="train-download-run")
        ui["run_zip"] = gr.File(label="run zip: state, data, model, run.json", interactive=False)
    with gr.Row():
        ui["upload"] = gr.File(label="Resume from a run zip", file_count="single", file_types=[".zip"],
                               elem_id="train-run-upload")
        ui["upload_btn"] = gr.Button("Resume from the uploaded zip", elem_id="train-resume-zip")
    with gr.Row():
        ui["hub_repo"] = gr.Textbox(label="Run's Hub repo id", placeholder="your-name/my-run")
        ui["hub_token"] = gr.Textbox(label="Token (private repos and pushes; not stored)", type="password")
        ui["hub_private"] = gr.Checkbox(True, label="private")
    with gr.Row():
        ui["push_btn"] = gr.Button("Push run (resumable) to the Hub")
        ui["hub_btn"] = gr.Button("Resume from a Hub repo", elem_id="train-resume-hub")
    ui["message"] = gr.Markdown(elem_id="train-resume-message")
    return ui


def wire(ctx, manager: JobManager, ui: dict[str, Any], *, run, until, owner, job, status, timer, seen, lists,
         list_updates: Callable[..., list]) -> None:
    def started(result: tuple[str | None, str, str | None], owner) -> list:
        job_id, text, name = result
        updates = list_updates(owner, name) if name else [gr.skip()] * len(lists)
        if job_id:
            return [job_id, text, gr.Timer(active=True), None, "", *updates]
        return [gr.skip(), gr.skip(), gr.skip(), gr.skip(), text, *updates]

    # Inner functions' parameter names and docstrings are the API's (gradio_client) descriptions.
    def on_download(run, owner=None):
        """A resumable zip of one of your runs: state, training images, model and run.json.

        Parameters:
            run: name of one of your runs (stopped or finished)
            owner: your token on a shared server (the page keeps it in the browser); None locally
        """
        return download_run(ctx, manager, run, owner)

    def on_upload(upload, until=None, owner=None, request: gr.Request = None):
        """Resume a run from a zip made by Download run; it is checked, then continues from its step.

        Parameters:
            upload: the run zip (gradio_client.handle_file(path))
            until: train until this step (None: the run's own goal)
            owner: your token on a shared server (the page keeps it in the browser); None locally
        """
        return started(resume_zip(ctx, manager, upload, until, owner, common.client_id(request)), owner)

    def on_hub(repo, token=None, until=None, owner=None, request: gr.Request = None):
        """Resume a run pushed with Push run (resumable) from its Hub repo.

        Parameters:
            repo: Hub repo id of the run, e.g. your-name/my-run
            token: Hugging Face token for a private repo (used once, never stored); None for a public one
            until: train until this step (None: the run's own goal)
            owner: your token on a shared server (the page keeps it in the browser); None locally
        """
        return started(resume_hub(ctx, manager, repo, token, until, owner, common.client_id(request)), owner)

    def on_push(run, repo, token, private=True, owner=None):
        """Push one of your runs with its full state (not only the model) to a Hub repo.

        Parameters:
            run: name of one of your runs (stopped or finished)
            repo: Hub repo id, e.g. your-name/my-run
            token: Hugging Face token with write access (used once, never stored)
            private: create the Hub repo as private
            owner: your token on a shared server (the page keeps it in the browser); None locally
        """
        return push_run(ctx, manager, run, repo, token, private, owner)

    outputs = [job, status, timer, seen, ui["message"], *lists]
    ui["download_btn"].click(on_download, [run, owner], [ui["run_zip"]], api_name="train_download_run")
    ui["upload_btn"].click(on_upload, [ui["upload"], until, owner], outputs, api_name="train_resume_zip")
    ui["hub_btn"].click(on_hub, [ui["hub_repo"], ui["hub_token"], until, owner], outputs, api_name="train_resume_hub")
    ui["push_btn"].click(on_push, [run, ui["hub_repo"], ui["hub_token"], ui["hub_private"], owner], [ui["message"]],
                         api_name="train_push_run")
