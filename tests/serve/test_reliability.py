"""Kill a model replica under load: Serve routes around it, replaces it, and the API recovers."""

import threading
import time

import psutil
import pytest
import requests

from .test_app import ITEM, _free_port, deploy

pytestmark = pytest.mark.ray



def _wait_for(condition, timeout: float, message: str) -> None:
    """Poll ``condition`` until it holds, failing with ``message`` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, message
        time.sleep(0.1)

def _replicas(name: str) -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if name in " ".join(p.info["cmdline"] or [])]


def _running_replicas(deployment: str) -> int:
    from ray import serve

    app = serve.status().applications["demoscope"]
    return app.deployments[deployment].replica_states.get("RUNNING", 0)


def test_killed_replica_is_replaced_and_requests_succeed_again(local_ray):
    from ray import serve

    url = deploy(_free_port(), min_replicas=2, max_replicas=2)
    codes: list[int] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set() and len(codes) < 2000:  # bounded in count and time
            try:
                codes.append(requests.post(f"{url}/v1/opinions", json={"items": [ITEM]}, timeout=30).status_code)
            except requests.RequestException:
                codes.append(-1)

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    try:
        for w in workers:
            w.start()
        _wait_for(lambda: len(codes) >= 20, 60, "the load never got going")  # traffic is flowing before the kill
        victims = _replicas("ServeReplica:demoscope:OpinionModel")
        assert len(victims) == 2
        victims[0].kill()
        killed_at = len(codes)
        deadline = time.time() + 90
        while _running_replicas("OpinionModel") < 2 and time.time() < deadline:
            time.sleep(0.5)
        recovered_at = len(codes)
        _wait_for(lambda: len(codes) >= recovered_at + 20, 60, "no traffic after the replica came back")
        stop.set()
        for w in workers:
            w.join(timeout=60)
        assert _running_replicas("OpinionModel") == 2, "the killed replica was not replaced"
        failures = [c for c in codes if c != 200]
        assert len(failures) <= 8, f"{len(failures)} failed requests around the kill: {failures[:10]}"
        assert all(c == 200 for c in codes[-20:]), "requests still fail after recovery"
        assert len(codes) > killed_at + 20
        after = requests.post(f"{url}/v1/opinions", json={"items": [ITEM]}, timeout=30)
        assert after.status_code == 200
    finally:
        stop.set()
        serve.shutdown()
