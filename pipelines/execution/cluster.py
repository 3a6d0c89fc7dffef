"""The Ray cluster: joined or started (``init_ray``), and what it holds: trial slots and the
memory of the GPU a trial gets (asked of a GPU through a Ray task)."""

from __future__ import annotations

import logging
import os
import socket

from pipelines.job import Resources, masked

__all__ = ["GPU_MEMORY_FALLBACK", "concurrency", "gpu_memory", "init_ray", "largest_node_memory",
           "slots_now"]

GPU_MEMORY_FALLBACK = 16 * 2**30  # bytes assumed for a GPU that could not be asked in time


def init_ray(address: str | None = None) -> bool:
    """Connect to the cluster at ``address``, or start a local Ray sized to this machine.

    Returns whether a connection was made here (so the caller knows to shut it down); an
    already initialised Ray is used as it is. Ray's token authentication is left to
    ``ray.init``: a local cluster gets a token, an existing cluster is joined with the token
    in ``RAY_AUTH_TOKEN`` / ``~/.ray/auth_token`` when it asks for one.
    """
    import ray

    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        from ray.exceptions import AuthenticationError

        _check_reachable(address)
        try:
            ray.init(address=address, **options)
        except AuthenticationError as exc:
            raise ConnectionError(masked(
                f"{address}: the cluster asks for a token ({exc}); set RAY_AUTH_MODE=token "
                "and RAY_AUTH_TOKEN, or put the token in ~/.ray/auth_token"
            )) from None
    else:
        ray.init(num_cpus=_machine_cpus(), **options)
    return True


def largest_node_memory() -> int | None:
    """Bytes of memory of the cluster's largest live node as Ray counts it (the memory its
    tasks may use plus its object store); ``None`` when Ray reports no node."""
    import ray

    sizes = [int(node["Resources"].get("memory", 0) + node["Resources"].get(
        "object_store_memory", 0)) for node in ray.nodes() if node.get("Alive")]
    return max(sizes) if sizes and max(sizes) > 0 else None


def _machine_cpus() -> int:
    """The CPUs this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a ``host:port`` nobody listens at (``ray.init`` retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://...": left to ray.init
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(masked(f"cannot reach a Ray cluster at {address} ({exc})")) from None


def concurrency(resources: Resources) -> int | None:
    """Tune's ``max_concurrent_trials``: the job's ``max_concurrent``, else no cap.

    Without a cap Tune starts a trial whenever the cluster has room for one, on the nodes of
    the survey's start and on those that join later (its pending trials are what asks the
    autoscaler for workers). A cap taken from the cluster at the start would be 1 on a
    cluster whose head trains nothing and whose workers start at 0, as ``cluster.yaml``'s.
    """
    return resources.max_concurrent


def slots_now(resources: Resources) -> int:
    """Trials the cluster holds at once now (its CPUs, GPUs), capped by ``max_concurrent``;
    at least 1."""
    import ray

    cluster = ray.cluster_resources()
    limit = int(cluster.get("CPU", 1) // resources.cpu)
    if resources.gpu > 0:
        limit = min(limit, int(cluster.get("GPU", 0) // resources.gpu))
    if resources.max_concurrent is not None:
        limit = min(limit, resources.max_concurrent)
    return max(1, limit)


def gpu_memory(resources: Resources, timeout_s: float = 300.0) -> float:
    """Total memory of a GPU a trial gets, asked of one through a Ray task (the driver may
    have none); ``GPU_MEMORY_FALLBACK`` if none answers in ``timeout_s``."""
    import ray

    def probe() -> int:
        import torch

        return torch.cuda.get_device_properties(0).total_memory

    task = ray.remote(probe).options(num_gpus=min(1.0, resources.gpu), num_cpus=0)
    try:
        return float(ray.get(task.remote(), timeout=timeout_s))
    except Exception:  # noqa: BLE001 - no GPU in time, or none usable: assume a small one
        return float(GPU_MEMORY_FALLBACK)
