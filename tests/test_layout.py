"""The layout rules that keep the library importable and the standard library intact."""

import subprocess
import sys
from pathlib import Path

from demoscope.surveys import load_subpopulations

ROOT = Path(__file__).resolve().parents[1]


def test_platform_still_means_the_standard_library_from_the_repo_root():
    assert not (ROOT / "platform" / "__init__.py").exists()
    out = subprocess.run([sys.executable, "-c", "import platform; print(platform.system())"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Linux"


def test_ray_layers_are_importable_as_demoscope_subpackages():
    out = subprocess.run([sys.executable, "-m", "demoscope.pipelines.aggregate", "--help"], cwd="/",
                         capture_output=True, text=True, check=True)
    assert "Aggregate survey microdata" in out.stdout


def test_shipped_subpopulation_tables_have_22_and_61_groups_with_license():
    assert len(load_subpopulations("22")) == 22
    assert len(load_subpopulations("61")) == 61
    data = ROOT / "platform" / "demoscope" / "surveys" / "data" / "subpop"
    assert "BSD 3-Clause" in (data / "LICENSE").read_text()
    assert "e0569aca48361415779aac7407aed1e2cbb67b4a" in (data / "ATTRIBUTION.md").read_text()


def test_every_61_group_has_a_steering_prompt_option():
    import ast
    import json
    from importlib import resources

    prompts = json.loads((resources.files("demoscope.surveys") / "data/subpop/steering_prompts.json").read_text())
    options = {(p["attribute"], o) for p in prompts for o in ast.literal_eval(p["options"])}
    assert {(s.attribute, s.group) for s in load_subpopulations("61")} <= options


def test_the_library_never_imports_the_ray_layers():
    """The library is the bottom layer: pipelines/, tune/ and serve/ compose it, never the other way round."""
    import re

    modules = list((ROOT / "platform" / "demoscope").rglob("*.py"))
    upward = re.compile(r"^\s*(from|import)\s+demoscope\.(pipelines|tune|serve)\b", re.MULTILINE)
    assert [str(p.relative_to(ROOT)) for p in modules if upward.search(p.read_text())] == []


def test_the_library_never_imports_ray():
    """Pure algorithms stay testable without a cluster: Ray belongs to pipelines/, tune/ and serve/."""
    import re

    modules = list((ROOT / "platform" / "demoscope").rglob("*.py"))
    assert len(modules) > 50  # an empty scan (a moved folder) would pass the check below
    offenders = [str(p.relative_to(ROOT)) for p in modules
                 if re.search(r"^\s*(import ray|from ray)\b", p.read_text(), re.MULTILINE)]
    assert offenders == []


def test_every_cli_job_has_a_module_with_a_job_and_help():
    import importlib

    from demoscope.pipelines.cli import JOBS, job_module, summary

    for name in JOBS:
        module = importlib.import_module(job_module(name))
        assert module.JOB.name == name and "example" in module.JOB.description
        assert summary(name) == module.SUMMARY and 20 < len(module.SUMMARY) < 120  # what --help shows is the job's own


def test_top_level_help_imports_no_job():
    """`demoscope --help` reads the summaries from the job modules' source: importing them would take seconds."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom demoscope.pipelines import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try: cli.main(['--help'])\n"
            "    except SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('demoscope.pipelines.')"
            " and m != 'demoscope.pipelines.cli'"
            " or m in ('torch', 'ray')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
