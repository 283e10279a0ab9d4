"""Demoscope: measure, steer and audit the opinions and biases of language models.

The library is plain Python and PyTorch; the Ray layers (``demoscope.pipelines``,
``demoscope.tune``, ``demoscope.serve``) compose it.
"""

__version__ = "0.1.0"
