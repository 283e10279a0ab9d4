"""Tests for demoscope.bias."""
