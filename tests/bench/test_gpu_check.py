"""``bench/gpu_check.py`` on CPU with the tiny config, in a Python shaped like the lent GPU machine.

That machine has torch, transformers, peft, accelerate and numpy but not
Ray, vLLM, pydantic, TRL, datasets, pyreadstat or scikit-learn, and gets a
plain copy of the tree (no install). The subprocess below hides those
packages (they look uninstalled, to ``import`` and to ``find_spec`` alike)
and drops the venv's editable-install finder, so ``demoscope`` is only
importable through the ``platform/`` path the script inserts itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"
ABSENT = ("ray", "vllm", "pydantic", "trl", "datasets", "pyreadstat", "sklearn")

# Run with `python -I -c WRAPPER script args...`: -I ignores PYTHONPATH and the working directory.
WRAPPER = f"""
import importlib.abc, importlib.util, runpy, sys
from pathlib import Path

ABSENT = {set(ABSENT)!r}


class Hidden(importlib.abc.MetaPathFinder):
    # Wraps a finder: absent packages are not found (None, as when uninstalled), the rest is delegated.
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):  # find_distributions, invalidate_caches: importlib.metadata needs them
        return getattr(self.inner, attr)


def editable(obj):
    return "__editable__" in (getattr(obj, "__module__", "") or "")


sys.meta_path[:] = [Hidden(f) for f in sys.meta_path if not editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not editable(h)]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.path_importer_cache.clear()
if importlib.util.find_spec("demoscope") is not None:
    sys.exit("demoscope is importable before the script ran: the check would prove nothing")

script, *argv = sys.argv[1:]
sys.argv = [script, *argv]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as stop:
    code = stop.code or 0
import demoscope

print("demoscope from", Path(demoscope.__file__).resolve().parent)
leaked = sorted(m for m in sys.modules if m.partition(".")[0] in ABSENT)
if leaked:
    sys.exit(f"absent packages were imported: {{leaked}}")
sys.exit(code)
"""


def load_script():
    """Import ``bench/gpu_check.py`` as a module (it is not a package member)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numbers(value):
    """Every number in a parsed JSON tree."""
    if isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny CPU run in the GPU machine's shape: (completed process, parsed JSON, seconds)."""
    out = tmp_path_factory.mktemp("gpu_check") / "nested" / "x.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-I", "-c", WRAPPER, str(SCRIPT), "--config", "tiny", "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=180, cwd=out.parent.parent,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text()), seconds


def test_runs_without_the_absent_packages_and_finds_the_library_itself(tiny_run):
    proc, _, _ = tiny_run
    assert f"demoscope from {REPO / 'platform' / 'demoscope'}" in proc.stdout
    for header in ("machine:", "roofline:", "[scoring]", "[gradients]", "[training]"):
        assert header in proc.stdout


def test_json_has_every_section_with_positive_finite_figures(tiny_run):
    _, report, _ = tiny_run
    assert report["config"]["name"] == "tiny" and report["machine"]["device"] == "cpu"
    assert all(math.isfinite(x) for x in numbers(report))
    assert report["roofline"]["measured_flops_per_s"] > 0
    scoring, gradients, training = report["scoring"], report["gradients"], report["training"]
    assert set(scoring["variants"]) == {"loop", "batched", "ours"}
    for figures in scoring["variants"].values():
        for key in ("prompts_per_s", "speedup_vs_loop", "body_positions", "head_positions",
                    "executed_share_of_roofline", "useful_share_of_roofline", "time_vs_roofline"):
            assert figures[key] > 0, key
    assert scoring["variants"]["loop"]["body_positions"] == scoring["loop_tokens"]
    assert scoring["variants"]["ours"]["body_positions"] < scoring["loop_tokens"]  # the prefixes ran once
    assert set(gradients["variants"]) == {"batched", "loop"}
    for figures in gradients["variants"].values():
        for key in ("samples_per_s", "executed_share_of_roofline", "useful_share_of_roofline"):
            assert figures[key] > 0, key
    assert gradients["batched_vs_loop"] > 0
    for key in ("examples_per_s", "tokens_per_s", "step_seconds", "executed_share_of_roofline",
                "useful_share_of_roofline", "mean_kl"):
        assert training[key] > 0, key


def test_scorers_and_gradients_agree_with_their_loops(tiny_run):
    _, report, _ = tiny_run
    assert report["scoring"]["max_abs_diff"] < 1e-5  # float32 on CPU
    assert report["gradients"]["relative_max_diff"] < 1e-4


def test_script_puts_platform_on_sys_path():
    module = load_script()
    assert module.LIBRARY_PATH == str(REPO / "platform")
    assert module.LIBRARY_PATH in sys.path


def test_prompt_ids_have_subpop_shape():
    """The token-id prompts keep bench/scoring.py's real prompts' size and sharing (78,198 tokens, trie 31,793)."""
    module = load_script()
    ids, n_options = module.subpop_shaped_ids(22, 20, 128256)
    assert len(ids) == len(n_options) == 440
    assert sum(map(len, ids)) == 78198
    assert abs(module.trie_positions(ids) - 31793) < 50
    assert all(seq[0] == importlib.import_module("gpu_check_inputs").BOS_ID for seq in ids)


def test_stand_in_tokenizer_gives_the_letter_ids():
    from demoscope.models.scoring import letter_token_ids

    module = load_script()
    tok = module.IdTokenizer()
    assert letter_token_ids(tok) == (module.LETTER_IDS, module.SPACE_LETTER_IDS)
    assert tok(["1 70 71", "1 99"])["input_ids"] == [[1, 70, 71], [1, 99]]
