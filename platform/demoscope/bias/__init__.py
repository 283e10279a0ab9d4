"""Bias transfer in distillation: the Equity Evaluation Corpus, bias statistics, reports, a planted-bias set.

The EEC is generated from the paper's published tables (never downloaded or
shipped: the NRC release asks not to redistribute it).
"""

from demoscope.bias.eec import generate_eec
from demoscope.bias.report import write_bias_report
from demoscope.bias.statistics import bias_statistics, gender_pairs, paired_differences, paired_t_test, race_pairs
from demoscope.bias.synthetic import synthetic_sentiment

__all__ = [
    "bias_statistics",
    "gender_pairs",
    "generate_eec",
    "paired_differences",
    "paired_t_test",
    "race_pairs",
    "synthetic_sentiment",
    "write_bias_report",
]
