"""The CLI is the contract: every job's --help renders, shows its example, and the example is copy-pasteable."""

import contextlib
import importlib
import io
import re
import subprocess
import sys

import pytest

from demoscope.pipelines import cli
from demoscope.pipelines.command import main_for


def _module(job: str) -> str:
    return cli.job_module(job)


def _description(job: str) -> str:
    return importlib.import_module(_module(job)).JOB.description


def _example(description: str) -> list[str]:
    """The lines of a description's example section (from the line that starts with 'example')."""
    lines = description.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("example "))
    return [line for line in lines[start:] if line.strip()]


def _help(call) -> str:
    """stdout of a call that prints help and exits; fails unless it exits 0."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code in (0, None)
    return out.getvalue()


def test_top_level_help_lists_every_job():
    text = _help(lambda: cli.main(["--help"]))
    for job in cli.JOBS:
        assert re.search(rf"^\s+{re.escape(job)}\s", text, re.M), job


@pytest.mark.parametrize("job", list(cli.JOBS))
def test_every_job_help_renders_with_its_example(job):
    text = _help(lambda: cli.main([job, "--help"]))
    assert text.startswith(f"usage: demoscope {job}") and "Traceback" not in text
    for line in _example(_description(job)):
        assert line in text
    assert "repeatable); repeatable" not in text and "(repeatable); repeatable" not in text


@pytest.mark.parametrize("job", list(cli.JOBS))
def test_every_module_entry_point_help_renders(job):
    module = importlib.import_module(_module(job))
    text = _help(lambda: main_for(module.JOB, ["--help"]))
    assert text.startswith(f"usage: python -m {_module(job)}")
    assert _example(module.JOB.description)[0] in text


@pytest.mark.parametrize("job", list(cli.JOBS))
def test_example_continuation_lines_follow_a_backslash(job):
    """A line indented deeper than the commands continues the one above, which must end in ' \\'."""
    lines = _example(_description(job))
    for line in lines:  # a lone backslash at a line's end in a non-raw string joins the lines instead
        assert not re.search(r"\S {8,}\S", line), f"{job}: two lines joined into one: {line!r}"
    for above, line in zip(lines, lines[1:]):
        continues = line.startswith(" " * 12)
        assert above.endswith(" \\") == continues, f"{job}: {above!r} -> {line!r}"
    assert not lines[-1].endswith("\\"), f"{job}: the example ends in a continuation"


def test_help_runs_as_a_command():
    done = subprocess.run([sys.executable, "-m", "demoscope.tune.sweep", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "example demoscope sweep" in done.stdout
    assert "ray" not in done.stderr.lower()  # --help starts nothing


def test_nested_settings_have_flags_of_their_own(tmp_path):
    import argparse

    from demoscope.pipelines.command import build_parser, config_from_args
    from demoscope.pipelines.train import JOB

    preset = tmp_path / "preset.yaml"
    preset.write_text("lora: {r: 4, alpha: 8}\n")
    parser = build_parser(JOB, argparse.ArgumentParser())
    args = parser.parse_intermixed_args(["--train-file", "x.parquet", "--config", str(preset), "--lora-r", "16",
                                         "--lora-target-modules", "q_proj", "--lora-target-modules", "k_proj",
                                         "lora.dropout=0.1"])
    config = config_from_args(JOB, args)
    # The flag beats the YAML, the YAML's other nested keys stay, key=value still reaches in.
    assert (config.lora.r, config.lora.alpha, config.lora.dropout) == (16, 8, 0.1)
    assert config.lora.target_modules == ["q_proj", "k_proj"]


@pytest.mark.parametrize("objective, own, others", [
    ("opinion-kl", ["--init-adapter", "--gamma", "--precision", "--lora-r"], ["--beta", "--student", "--max-chars"]),
    ("dpo", ["--beta", "--prompt-template", "--load-in-4bit", "--lora-r"], ["--init-adapter", "--student", "--gamma"]),
    ("distill", ["--student", "--distill-mode", "--vocab-size"], ["--lora-r", "--beta", "--strategy", "--grad-accum"]),
])
def test_train_help_lists_only_the_objectives_own_settings(objective, own, others, tmp_path):
    for argv in (["--objective", objective], [f"objective={objective}"]):
        text = _help(lambda argv=argv: cli.main(["train", *argv, "--help"]))
        assert f"those of --objective {objective}" in text
        assert all(flag in text for flag in own), [flag for flag in own if flag not in text]
        assert not [flag for flag in others if flag in text]
    preset = tmp_path / "preset.yaml"  # a --config file's objective picks the settings too
    preset.write_text(f"objective: {objective}\n")
    assert f"those of --objective {objective}" in _help(lambda: cli.main(["train", "--config", str(preset), "--help"]))


def test_an_unknown_objective_is_named_with_the_choices(capsys):
    assert cli.main(["train", "--objective", "ppo", "--train-file", "x.jsonl"]) == 2
    assert "unknown objective 'ppo'; one of opinion-kl, opinion-wd, dpo, sft, distill" in capsys.readouterr().err
