"""``bench/decoding.py``'s variants agree: the re-encoding baselines return our texts and scores for a seed."""

import importlib.util
import sys
from pathlib import Path

import pytest

from demoscope.decoding import DecodingMethod, SamplingParams, derive_seed

BENCH = Path(__file__).resolve().parents[2] / "bench" / "decoding.py"
PARAMS = SamplingParams(temperature=0.7, top_k=50, max_new_tokens=6, seed=1)


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module (a unique name: ``decoding`` alone could shadow or be shadowed)."""
    spec = importlib.util.spec_from_file_location("bench_decoding", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("method", ["cbs:2,2,2", "bon:4"])
def test_reencoding_baseline_agrees_with_ours(bench, large, guide, method):
    model, tok = large
    prompts = list(bench.IMDB_PROMPTS[:2])
    seeds = [derive_seed(PARAMS.seed, p) for p in prompts]
    method = DecodingMethod.parse(method)
    runs = {v: bench.decode(v, method, prompts, model, tok, guide, PARAMS, seeds) for v in bench.VARIANTS}
    for baseline in ("no cache", "original"):
        same, diff = bench.agreement(runs[baseline], runs["ours"])
        assert same == len(prompts)
        assert diff < 1e-5
    # Every returned response is finished (max_new_tokens), so its score carries the EOS term.
    assert all(r.finish_reason == "length" or r.token_ids[-1] == tok.eos_token_id for r in runs["ours"].results)
    assert runs["ours"].tokens == runs["original"].tokens == runs["no cache"].tokens > 0
    if method.name == "cbs":  # without a cache each chunk's prefixes are re-encoded; with one only the prompt
        assert runs["no cache"].reencoded > runs["original"].reencoded == runs["ours"].reencoded
