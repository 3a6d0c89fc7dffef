"""cluster.yaml against the JSON schema that Ray ships for cluster-launcher configs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def _config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    jsonschema.validate(_config(), json.loads(SCHEMA.read_text()))


def test_cluster_matches_the_projects_ray_and_python():
    image = _config()["docker"]["image"]
    assert f"ray:{ray.__version__}-py311-gpu" in image


def test_services_listen_on_loopback_only():
    start = " ".join(_config()["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "mlflow server --host 127.0.0.1" in start
