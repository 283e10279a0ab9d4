"""Local jobs start their own loopback Ray next to a `ray start` head (or its stale address file);
--address attaches.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

# A driver as a job runs it: init_ray with the job's address, then one task, then where it ran.
DRIVER = """
import sys
from demoscope.pipelines.runtime import init_ray
ray = init_ray(sys.argv[1] or None, num_cpus=1)
print(ray.get_runtime_context().gcs_address, ray.get(ray.remote(lambda: 41 + 1).remote()), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _driver(env: dict, address: str = "") -> str:
    done = subprocess.run([sys.executable, "-c", DRIVER, address], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    gcs, answer = done.stdout.split()[-2:]
    assert answer == "42"
    return gcs


@pytest.fixture
def head():
    """A `ray start --head --block` on loopback whose temp dir (and address file) is private to this test.

    RAY_TMPDIR moves Ray's default temp dir, so the head's ray_current_cluster
    is where this test's drivers look, and nobody else's. The head is stopped
    by signalling its own `ray start` process, never with `ray stop` (which
    would stop every Ray on the machine).
    """
    root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit in 107 characters
    env = {**os.environ, "RAY_TMPDIR": str(root)}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--port", str(port),
               "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", "--include-dashboard=false",
               "--num-cpus=1", "--disable-usage-stats"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    address_file = root / "ray" / "ray_current_cluster"
    deadline = time.time() + 90
    while not address_file.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert address_file.exists(), "ray start --head did not come up"

    def stop():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the session holds only what this `ray start` launched
            process.wait(timeout=60)

    yield env, f"127.0.0.1:{port}", address_file, stop
    stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow  # 30 s to 2 min: a `ray start` head and three drivers
def test_a_local_job_starts_its_own_ray_beside_a_head_and_attaches_only_when_asked(head):
    env, address, address_file, stop = head
    assert address_file.read_text().strip() == address
    own = _driver(env)  # the job's default: a Ray of its own (this used to attach to the head, then refuse num_cpus)
    assert own != address and own.startswith("127.0.0.1:")
    assert _driver(env, address) == address  # --address ADDR attaches to the head
    stop()
    address_file.write_text(address)  # a stopped head's address left behind
    assert _driver(env) != address


# An actor-pool map as the jobs run them (evaluate, generate, distill, select).
ACTOR_POOL = """
import pandas as pd
from demoscope.pipelines.runtime import ACTOR_POOL_OPTIONS, init_ray
ray = init_ray(num_cpus=1)
import ray.data

class Echo:
    def __init__(self, tag):
        self.tag = tag

    def __call__(self, batch):
        return batch.assign(tag=self.tag)

frame = ray.data.from_pandas(pd.DataFrame({"a": range(4)})).map_batches(
    Echo, fn_constructor_kwargs={"tag": "t"}, batch_format="pandas", concurrency=1, num_cpus=1, **ACTOR_POOL_OPTIONS,
).to_pandas()
print(len(frame), flush=True)
"""


def test_actor_pools_run_without_ray_error_or_deprecation_lines():
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "USER")}
    done = subprocess.run([sys.executable, "-c", ACTOR_POOL], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split()[-1] == "4", done.stderr[-3000:]
    assert "constructor arguments in the object store" not in done.stderr  # Ray core's error-level line
    assert "deprecated" not in done.stderr and " E " not in done.stderr, done.stderr[-3000:]
