"""Test-session setup: loopback-only Ray, shared by every test that needs it.

The environment is set before anything imports Ray (Ray reads it at import).
"""

import os

from demoscope.pipelines.runtime import LOCAL_ENV

for _key, _value in LOCAL_ENV.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session (start-up costs seconds)."""
    from demoscope.pipelines.runtime import init_ray

    ray = init_ray(num_cpus=2)
    yield ray
    ray.shutdown()
