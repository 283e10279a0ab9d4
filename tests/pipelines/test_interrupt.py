"""Ctrl-C stops a job and whatever called it: a script exits 130 without a traceback, a caller sees
KeyboardInterrupt.
"""

import subprocess
import sys

import pytest
from pydantic import BaseModel

from demoscope.pipelines.command import Job, build_parser, run_parsed


class _Config(BaseModel):
    x: int = 1


def _interrupted(config, address, verbose):
    raise KeyboardInterrupt


JOB = Job(name="sleepy", description="example: none", config=_Config, run=_interrupted)


def test_a_caller_sees_the_interrupt(capsys):
    with pytest.raises(KeyboardInterrupt):
        run_parsed(JOB, build_parser(JOB).parse_intermixed_args([]))
    assert "demoscope sleepy: interrupted" in capsys.readouterr().err


def test_a_script_exits_130_quietly_on_a_real_sigint():
    script = """
import os, signal, sys, threading, time
from pydantic import BaseModel
from demoscope.pipelines.command import Job, build_parser, run_parsed
class C(BaseModel):
    x: int = 1
def run(config, address, verbose):
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    time.sleep(30)
    return 0
job = Job(name="sleepy", description="example: none", config=C, run=run)
sys.exit(run_parsed(job, build_parser(job).parse_intermixed_args([])))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode in (130, -2)  # -2: killed by SIGINT, as the shell reports 130
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.ray
def test_a_job_with_ray_running_exits_130_and_says_what_it_kept():
    """Ray's atexit shutdown used to turn an interrupt into exit 1; the job's own message replaces the generic one."""
    script = """
import sys
from pydantic import BaseModel
from demoscope.pipelines.command import Job, build_parser, run_parsed
from demoscope.pipelines.runtime import init_ray
class C(BaseModel):
    x: int = 1
def run(config, address, verbose):
    init_ray(num_cpus=1)
    raise KeyboardInterrupt("interrupted; OUT keeps 2 checkpoints")
job = Job(name="sleepy", description="example: none", config=C, run=run)
sys.exit(run_parsed(job, build_parser(job).parse_intermixed_args([])))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode in (130, -2), result.stderr[-2000:]
    assert "demoscope sleepy: interrupted; OUT keeps 2 checkpoints" in result.stderr
    assert "no partial output" not in result.stderr and "Traceback" not in result.stderr
