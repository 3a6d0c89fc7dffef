"""``survey submit``: send ``survey run JOB`` to a Ray cluster through the Ray Jobs API.

The job runs on the cluster's head node with this project as its working directory, so the
cluster runs exactly the code and job file you have. Results and tracking must name places
the cluster can reach and that outlive the job: an absolute path on shared storage (NFS) or an
object-store URI for ``--out``, and an MLflow server URI for ``--tracking-uri`` (a relative path
or a local SQLite file would land in the job's temporary working directory).

Ray 2.59+ clusters authenticate with a token. ``JobSubmissionClient`` sends the token that Ray's
own loader finds (``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``); the
token is never printed, logged or passed to the job.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.job import JobError, masked

__all__ = ["Submission", "submit"]

ROOT = Path(__file__).resolve().parents[2]  # the project: pipelines/execution/submit.py

#: Kept out of the working directory uploaded to the cluster.
EXCLUDES = [".git", ".venv", ".venv-ci", "results", "mlruns", "mlflow.db", "*.egg-info"]


@dataclass(frozen=True)
class Submission:
    """A submitted survey: how to follow it."""

    submission_id: str
    address: str
    entrypoint: str

    def instructions(self) -> str:
        return masked(
            f"submitted {self.submission_id} to {self.address}\n"
            f"  follow:  ray job logs --address {self.address} --follow {self.submission_id}\n"
            f"  status:  ray job status --address {self.address} {self.submission_id}\n"
            f"  stop:    ray job stop --address {self.address} {self.submission_id}"
        )


def _check_shared(out: str, tracking_uri: str) -> None:
    if "://" not in out and not Path(out).is_absolute():
        raise JobError(
            f"--out: {out!r} is relative; a submitted survey needs shared storage the cluster "
            "keeps (an absolute NFS path or s3://...)"
        )
    if tracking_uri.startswith("sqlite:") or "://" not in tracking_uri:
        raise JobError(
            f"--tracking-uri: {masked(tracking_uri)!r} is local; a submitted survey needs an "
            "MLflow server URI (e.g. http://127.0.0.1:5000 on the head, see cluster.yaml)"
        )


def submit(
    job: str,
    address: str,
    out: str,
    tracking_uri: str,
    overrides: Sequence[str] = (),
    root: Path = ROOT,
    run_flags: Sequence[str] = (),
) -> Submission:
    """Submit ``survey run JOB`` (with ``out``, ``tracking_uri``, ``--set`` overrides and
    ``run_flags``, e.g. ``--restart-unresumable``).

    The job file must lie inside the project (it travels with the working directory).
    """
    _check_shared(out, tracking_uri)
    job_path = Path(job).resolve()
    try:
        relative = job_path.relative_to(root)
    except ValueError:
        raise JobError(f"{job}: a submitted job file must lie inside {root}") from None
    args = ["python", "-m", "pipelines.cli", "run", str(relative), "--out", out,
            "--tracking-uri", tracking_uri, "--address", "auto", *run_flags]
    for item in overrides:
        args += ["--set", item]
    entrypoint = shlex.join(args)

    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
        submission_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env={"working_dir": str(root), "excludes": EXCLUDES},
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "401" in message or "403" in message or "uthenticat" in message:
            message += (
                " (the cluster wants its auth token: set RAY_AUTH_TOKEN or copy the head's "
                "~/.ray/auth_token to this machine)"
            )
        elif "413" in message:
            message += (
                f" (the project folder {root} is too large to upload: list large data files in "
                ".gitignore, which the upload honours, or move them out)"
            )
        raise JobError(masked(f"--address {address}: {message}")) from None
    return Submission(submission_id, address, entrypoint)
