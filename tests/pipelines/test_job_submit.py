"""`ray job submit` of the aggregation job to a real `ray start` head, on loopback.

The head is separate from the session's embedded Ray (``local_ray``): its own
ports, its own temp dir and its own token file. It is started with ``--block``
in a new process group and torn down by SIGTERM to that ``ray start`` (which
stops what it started), then by pid for anything left in its group or naming its
temp dir. Never ``ray stop``: it kills every Ray process on the machine by name,
the session's embedded Ray and anyone else's included.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demoscope.pipelines.runtime import LOCAL_ENV, LOOPBACK

pytestmark = pytest.mark.ray

VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"
START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 180


# ---------------------------------------------------------------- survey

NAN = np.nan
PARTY = {1.0: "Republican", 2.0: "Democrat", 99.0: "Refused"}
BLM = {1.0: "Support", 2.0: "Oppose", 99.0: "Refused"}
# QKEY, WEIGHT_W68, F_PARTY_FINAL, BLM_W68
RESPONDENTS = [
    (1, 1.0, 1.0, 2.0),    # Republican, Oppose
    (2, 2.0, 1.0, 1.0),    # Republican, Support
    (3, 0.5, 1.0, 99.0),   # Republican, Refused
    (4, 1.5, 2.0, 1.0),    # Democrat, Support
    (5, 0.5, 2.0, 2.0),    # Democrat, Oppose
    (6, 2.0, 2.0, NAN),    # Democrat, no answer: dropped
    (7, NAN, 2.0, 1.0),    # Democrat, no weight: counts 0, not in n
    (8, 1.0, 99.0, 1.0),   # party refused: in neither group
]
# By hand. Republicans: weights 2 (Support), 1 (Oppose), 0.5 (Refused), total 3.5.
#   refusal 0.5/3.5 = 1/7; responses [2, 1] / 3 = [2/3, 1/3]; n 3; n_eff 3.5^2 / (4+1+0.25) = 7/3.
# Democrats: 1.5 (Support), 0.5 (Oppose), the NaN weight as 0, total 2.
#   refusal 0; responses [0.75, 0.25]; n 2; n_eff 2^2 / (2.25+0.25) = 1.6.
EXPECTED = {
    "Republican": {"responses": [2 / 3, 1 / 3], "refusal_rate": 1 / 7, "n": 3, "n_eff": 7 / 3, "weight_sum": 3.5},
    "Democrat": {"responses": [0.75, 0.25], "refusal_rate": 0.0, "n": 2, "n_eff": 1.6, "weight_sum": 2.0},
}


def write_survey(path: Path) -> Path:
    import pyreadstat

    frame = pd.DataFrame(RESPONDENTS, columns=["QKEY", "WEIGHT_W68", "F_PARTY_FINAL", "BLM_W68"], dtype=float)
    pyreadstat.write_sav(
        frame,
        str(path),
        column_labels={"BLM_W68": "BLM_W68. Do you support or oppose the Black Lives Matter movement?"},
        variable_value_labels={"F_PARTY_FINAL": PARTY, "BLM_W68": BLM},
    )
    return path


# ---------------------------------------------------------------- head


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _free_range(size: int = 64) -> int:
    """Start of `size` consecutive free ports (the head's worker-port range)."""
    for base in range(20000, 40000, 512):
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind((LOOPBACK, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no free worker-port range on loopback")


def _started_by(pid: int) -> list:
    """Every live process `ray start` started: its descendants (workers rename themselves to
    ray::IDLE and take their own process group) and its process group (in case it died first)."""
    import psutil

    procs = {}
    try:
        procs = {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        pass
    for proc in psutil.process_iter():
        try:
            if proc.pid not in procs and proc.pid != pid and os.getpgid(proc.pid) == pid:
                procs[proc.pid] = proc
        except (psutil.Error, ProcessLookupError):
            continue
    return list(procs.values())


def _stop(procs: list, grace_s: float) -> list[int]:
    """Wait up to `grace_s` for the given processes (all ours) to exit, then SIGKILL the rest by pid."""
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    return [proc.pid for proc in alive if _status(proc) != psutil.STATUS_ZOMBIE]  # zombies are dead, awaiting reaping


def _status(proc) -> str | None:
    import psutil

    try:
        return proc.status()
    except psutil.Error:
        return None


@pytest.fixture
def ray_head(tmp_path):
    """A `ray start --head` on 127.0.0.1 with its own ports, temp dir and token; yields (dashboard URL, env)."""
    # Short temp dir: Ray puts Unix sockets under it (path limit 107 characters).
    temp_dir = tempfile.mkdtemp(prefix="dsray-", dir="/tmp")
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(LOCAL_ENV)
    env["RAY_AUTH_TOKEN_PATH"] = str(token)  # this head's token, not ~/.ray/auth_token
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's `python` is this venv's
    # Ray 2.60 drains a node for up to 30 s on SIGTERM before stopping it; a test head needs no drain.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"

    dashboard_port = _free_port()
    workers = _free_range()
    ports = {
        "--port": _free_port(),
        "--dashboard-port": dashboard_port,
        "--ray-client-server-port": _free_port(),
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
        "--min-worker-port": workers,
        "--max-worker-port": workers + 63,
    }
    command = [
        str(RAY), "start", "--head", "--block",
        f"--node-ip-address={LOOPBACK}", f"--dashboard-host={LOOPBACK}",
        "--include-dashboard=true", "--num-cpus=2", f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    log_path = tmp_path / "ray_start.log"
    log = open(log_path, "w")
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start did not come up:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield f"http://{LOOPBACK}:{dashboard_port}", env
    finally:
        # --block: on SIGTERM `ray start` stops what it started. Signal it alone: the
        # processes it stops are its children, and a group-wide SIGTERM makes it wait on dead ones.
        started = _started_by(head.pid)
        if head.poll() is None:
            head.terminate()
            try:
                head.wait(timeout=20)
            except subprocess.TimeoutExpired:
                head.kill()
                head.wait(timeout=10)
        log.close()
        # Workers and the job's driver exit once the raylet is gone; whatever does not is killed by pid.
        survivors = _stop(started, grace_s=10)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not survivors, f"Ray processes outlived the test head: {survivors}"


# ---------------------------------------------------------------- test


def test_job_submit_aggregates_on_head(ray_head, tmp_path):
    address, env = ray_head
    survey = write_survey(tmp_path / "ATP W68.sav")
    out = tmp_path / "agg"
    working_dir = tmp_path / "job"  # small on purpose: the repo would upload its .venv
    working_dir.mkdir()
    (working_dir / "README.txt").write_text("working dir for the job-submit test\n")

    submit = [
        str(RAY), "job", "submit", "--address", address, "--working-dir", str(working_dir), "--",
        "python", "-m", "demoscope.pipelines.aggregate",
        "--input", str(survey), "--out", str(out), "--no-progress",
    ]
    result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert result.returncode == 0, f"ray job submit failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "succeeded" in result.stdout, result.stdout[-4000:]

    frame = pd.read_parquet(out / "distributions.parquet")
    assert list(frame.columns) == [
        "qkey", "attribute", "group", "question", "options", "responses",
        "refusal_rate", "ordinal", "n", "n_eff", "weight_sum", "source",
    ]
    party = frame[(frame["qkey"] == "BLM_W68") & (frame["attribute"] == "POLPARTY")].set_index("group")
    assert sorted(party.index) == ["Democrat", "Republican"]
    for group, want in EXPECTED.items():
        row = party.loc[group]
        assert list(row["options"]) == ["Support", "Oppose", "Refused"]
        assert np.allclose(list(row["responses"]), want["responses"], rtol=0, atol=1e-12)
        assert row["refusal_rate"] == pytest.approx(want["refusal_rate"], abs=1e-12)
        assert row["n"] == want["n"]
        assert row["n_eff"] == pytest.approx(want["n_eff"], abs=1e-12)
        assert row["weight_sum"] == pytest.approx(want["weight_sum"], abs=1e-12)
        assert row["source"] == "ATP W68.sav"


@pytest.mark.slow  # ~30 s; test_job_submit_aggregates_on_head keeps `ray job submit` in the default set
def test_job_submit_trains_on_head(ray_head, prepared, tmp_path):
    address, env = ray_head
    out = tmp_path / "train"
    working_dir = tmp_path / "job"
    working_dir.mkdir()
    (working_dir / "README.txt").write_text("working dir for the job-submit test\n")
    submit = [
        str(RAY), "job", "submit", "--address", address, "--working-dir", str(working_dir), "--",
        "python", "-m", "demoscope.pipelines.train", "--model", "tiny:llama",
        "--train-file", str(prepared["train"]), "--val-file", str(prepared["val"]), "--out", str(out),
        "--num-workers", "2", "--epochs", "1", "--batch-size", "16",
    ]
    result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert result.returncode == 0, f"ray job submit failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "succeeded" in result.stdout, result.stdout[-4000:]
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0]
