"""The ``survey`` command: run, validate and inspect intrinsic-dimension surveys.

    survey run JOB.yaml [--out DIR] [--tracking-uri URI] [--address ADDR] [--set key.path=value]
    survey validate JOB.yaml [--set key.path=value] [--fits]
    survey status NAME|JOB.yaml [--out DIR] [--set key.path=value]
    survey sync-mlflow NAME|JOB.yaml [--out DIR] [--tracking-uri URI] [--set key.path=value]
    survey analyze NAME|JOB.yaml [--out DIR] [--rule RULE] [--threshold X] [--group-by AXES]
    survey report NAME|JOB.yaml [--out DIR] [--tracking-uri URI] [--address ADDR] [--set ...]
    survey submit JOB.yaml --address http://HEAD:8265 --out SHARED --tracking-uri URI [--set ...]
    survey export JOB.yaml -o PLAN.json [--out DIR] [--set ...]     (then python -m mflow.batch)
    survey import JOB.yaml BATCH_OUT [--out DIR] [--tracking-uri URI] [--set ...]

Defaults: results under ``$MFLOW_RESULTS`` or ``./results``; MLflow at ``$MLFLOW_TRACKING_URI``
or ``sqlite:///mlflow.db`` (in the working directory); a local Ray sized to this machine unless
``--address`` names a cluster. Bad input prints one line and exits with code 2; a survey with
failed fits exits 1; an interrupted one 130 (run the same command again to resume);
``sync-mlflow`` exits 1 when MLflow cannot be reached.

The console script is ``pipelines.cli.app:main``: ``parser`` holds the arguments,
``commands`` the commands that plan, run and record fits, ``analyze`` those that read stored
fits again, ``common`` and ``progress`` what they print.
"""

from pipelines.cli.app import main

__all__ = ["main"]
