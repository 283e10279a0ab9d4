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
import os

LOOPBACK = "127.0.0.1"

# Set for every local process: Ray, torch.distributed (gloo), vLLM, the HF hub.
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # with this unset, Ray 2.60 picks the machine's LAN address
    "RAY_AUTH_MODE": "token",  # the CLI then reads ~/.ray/auth_token; behaviour does not depend on machine state
    "GLOO_SOCKET_IFNAME": "lo",
    "VLLM_HOST_IP": LOOPBACK,
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # no per-checkpoint "Loading weights" bars in job output
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def use_loopback_env() -> None:
    """Set the loopback environment for this process and its children (user values win)."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)


def init_ray(address: str | None = None, verbose: bool = False, num_cpus: int | None = None):
    """Attach to ``address`` (or ``RAY_ADDRESS``), else start a local loopback Ray. Idempotent."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        use_loopback_env()
    import ray

    if ray.is_initialized():
        return ray
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
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = verbose  # our own progress bar shows files and rows
    DataContext.get_current().print_on_execution_start = verbose
    for name in ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve"):
        logging.getLogger(name).setLevel(level)
    return ray
