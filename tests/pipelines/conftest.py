"""Shared fixtures of the pipeline tests: one real local Ray per session, tiny jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.job import Job, parse_job


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster, started once per test session (2 CPUs, a small object store)."""
    import ray  # a dependency: a failed import is an error, not a skip

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            object_store_memory=80_000_000,
            include_dashboard=False,
            log_to_driver=False,
        )
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite MLflow store shared by a module's tests (each test uses its own survey name)."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}"


def tiny_raw(name: str, **blocks: Any) -> dict[str, Any]:
    """A job of tiny fits (100 steps of 200 points); ``blocks`` replace whole top-level keys."""
    raw: dict[str, Any] = {
        "name": name,
        "data": {"dataset": "sine", "n": 200},
        "grid": {"dataset": ["sine", "line"], "seed": [0, 1]},
        "train": {"steps": 100, "log_every": 50, "batch_size": 64},
        "resources": {"cpu": 1, "retries": 1},
    }
    raw.update(blocks)
    return raw


@pytest.fixture
def tiny_job():
    """``tiny_job(name, **blocks) -> Job``: see ``tiny_raw``."""

    def make(name: str, overrides: tuple[str, ...] = (), **blocks: Any) -> Job:
        return parse_job(tiny_raw(name, **blocks), overrides)

    return make


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
