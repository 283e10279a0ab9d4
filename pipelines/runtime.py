"""Start or attach to Ray, kept on loopback for local runs.

By default a job starts an embedded local Ray sized to this machine. Ray 2.60
binds to the machine's non-loopback address unless told otherwise and turns
token auth on, so local runs set the environment below before Ray starts
(every process the project starts here talks only to 127.0.0.1). With
``--address`` or ``RAY_ADDRESS`` (as ``ray job submit`` sets it) the job
attaches to that cluster instead and changes nothing.

Ray reads these variables when it is imported, so Ray-layer modules import
``ray`` inside functions, after :func:`init_ray` has set them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings

from demoscope.errors import ConfigError

LOOPBACK = "127.0.0.1"

# Set for every local process: Ray, torch.distributed (gloo), vLLM, the HF hub.
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # with this unset, Ray 2.60 picks the machine's LAN address
    "RAY_AUTH_MODE": "token",  # the CLI then reads ~/.ray/auth_token; behaviour does not depend on machine state
    "GLOO_SOCKET_IFNAME": "lo",
    "VLLM_HOST_IP": LOOPBACK,
    "VLLM_NO_USAGE_STATS": "1",  # vLLM reports usage over the network unless told not to
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # no per-checkpoint "Loading weights" bars in job output
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}

# Ray remote args for every class-based Ray Data `map_batches` (actor pools). Ray Data 2.60
# passes each pool actor its transform chain through the object store and enables restarts
# (max_restarts=-1) by default; Ray core then logs, at error level on every run, that such
# an actor could not be restarted if those arguments were lost. Our pools hold a model and
# are short-lived: a dead actor fails the job with its error instead of a silent re-load.
# Ray 2.60 has no named map_batches parameter for it; the generic remote args it goes
# through warn of their removal in Ray 2.64 (init_ray silences that one warning).
ACTOR_POOL_OPTIONS = {"max_restarts": 0}


def use_loopback_env() -> None:
    """Set the loopback environment for this process and its children (user values win)."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)


# Whether this process started its own Ray (True) or attached to a cluster, which may autoscale (False).
_STARTED_LOCAL = {"value": False}


def init_ray(address: str | None = None, verbose: bool = False, num_cpus: int | None = None):
    """Attach to ``address`` (or ``RAY_ADDRESS``), else start a local loopback Ray. Idempotent."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        use_loopback_env()
    import ray

    if ray.is_initialized():
        return ray
    _STARTED_LOCAL["value"] = not address
    level = logging.INFO if verbose else logging.ERROR
    quiet = {"logging_level": level, "log_to_driver": verbose, "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(
            # "local" starts our own instance; with None, Ray would attach to a `ray start` head
            # (or a stale /tmp/ray/ray_current_cluster) and then refuse num_cpus.
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            # The dashboard also serves the state API that Ray Train's controller polls.
            include_dashboard=True,
            dashboard_host=LOOPBACK,
            _node_ip_address=LOOPBACK,
            **quiet,
        )
    # ACTOR_POOL_OPTIONS' own deprecation notice, once per map_batches; a newer Ray names the option.
    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = verbose  # our own progress bar shows files and rows
    DataContext.get_current().print_on_execution_start = verbose
    for name in ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve"):
        logging.getLogger(name).setLevel(level)
    return ray


def check_resources(job: str, num_workers: int, use_gpu: bool = False, extra_cpus: float = 0.0,
                    unit: str = "the run", flag: str = "num_workers") -> None:
    """Fail at once, naming what fits, when ``num_workers`` Ray Train workers (+ ``extra_cpus``) cannot fit.

    Ray would otherwise leave the placement group pending and the job waiting
    silently. The request is what Ray Train's ``ScalingConfig`` asks for; it is
    compared with ``ray.cluster_resources()``. On an attached cluster (which
    may autoscale) a shortfall is only a warning on stderr; on the local Ray
    this process started it raises :class:`ConfigError`. ``flag`` names the
    setting the advice mentions (``replicas`` for Ray Data actor pools, which
    ask one CPU, or one GPU, per actor as a Train worker does). Call after
    :func:`init_ray`.
    """
    import ray
    from ray.train import ScalingConfig

    asked = ScalingConfig(num_workers=num_workers, use_gpu=use_gpu).total_resources
    asked["CPU"] = asked.get("CPU", 0.0) + extra_cpus
    have = ray.cluster_resources()
    short = {k: v for k, v in asked.items() if v > 0 and v > have.get(k, 0.0) + 1e-9}
    if not short:
        return
    kind = "GPU" if "GPU" in short else "CPU"
    per_worker = asked[kind] / num_workers if kind == "GPU" else (asked["CPU"] - extra_cpus) / num_workers
    fits = math.floor((have.get(kind, 0.0) - (extra_cpus if kind == "CPU" else 0.0)) / per_worker) if per_worker else 0
    parts = (f"{flag}={num_workers} x {per_worker:g} {kind}"
             + (f" + {extra_cpus:g}" if kind == "CPU" and extra_cpus else ""))
    advice = (f"use {flag}={fits}" if fits >= 1 else f"run it where Ray has {kind}s") + " or --address a bigger cluster"
    message = (f"{job}: {unit} asks {asked[kind]:g} {kind}s ({parts}); this Ray has "
               f"{have.get(kind, 0.0):g}; {advice}")
    if not _STARTED_LOCAL["value"]:  # a cluster may add nodes on demand: say it, and let Ray wait
        print(f"warning: {message}; waiting for the cluster to provide them", file=sys.stderr)
        return
    raise ConfigError(message)
