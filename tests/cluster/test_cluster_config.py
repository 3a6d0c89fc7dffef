"""cluster.yaml against the JSON schema that Ray ships for cluster-launcher configs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def _config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    jsonschema.validate(_config(), json.loads(SCHEMA.read_text()))


def test_cluster_matches_the_projects_ray_and_python():
    image = _config()["docker"]["image"]
    assert f"ray:{ray.__version__}-py311-gpu" in image


def _requirements() -> dict[str, Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name: Requirement(r) for r in project["dependencies"]}


def test_ray_is_pinned_to_the_minor_version_of_the_clusters_image():
    tag = _config()["docker"]["image"].split(":")[1]  # 2.60.0-py311-gpu
    image = Version(tag.split("-")[0])
    pin = _requirements()["ray"].specifier
    assert image in pin
    assert Version(f"{image.major}.{image.minor + 1}") not in pin
    assert Version(f"{image.major}.{image.minor - 1}.99") not in pin


def test_constraints_pin_versions_the_requirements_allow():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [Requirement(x) for x in lines if x.strip() and not x.startswith("#")]
    assert all(len(p.specifier) == 1 and next(iter(p.specifier)).operator == "==" for p in pins)
    pinned = {p.name.lower(): Version(next(iter(p.specifier)).version) for p in pins}
    assert "manifold-flow-survey" not in pinned
    for name, requirement in _requirements().items():
        assert name.lower() in pinned, name
        assert pinned[name.lower()] in requirement.specifier, (name, pinned[name.lower()])
    assert pinned["ray"] == Version(ray.__version__)


def test_services_listen_on_loopback_only():
    start = " ".join(_config()["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "mlflow server --host 127.0.0.1" in start
