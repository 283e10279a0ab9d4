"""Job configs: the shared base and settings types, and loading from YAML + flags + ``key=value`` overrides.

Each job's own config lives beside the job (``demoscope.pipelines.<job>``,
``demoscope.tune.<job>``, ``demoscope.serve.config``).
"""

from demoscope.config.base import GuideModels, JobConfig, LetterLogprobs
from demoscope.config.loading import load_config, parse_overrides, save_config

__all__ = ["GuideModels", "JobConfig", "LetterLogprobs", "load_config", "parse_overrides",
           "save_config"]
