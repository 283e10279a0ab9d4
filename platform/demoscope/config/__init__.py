"""Typed job configs: one pydantic model per job, loaded from YAML + overrides."""

from demoscope.config.jobs import AggregateConfig, AuditConfig, BiasConfig, DemoConfig, DistillConfig, EvaluateConfig, GenerateConfig, OpinionDistillConfig, PrepareConfig, SelectConfig, ServeConfig, SurveyPairsConfig, SweepConfig, SynthSurveyConfig
from demoscope.config.loading import load_config, parse_overrides, save_config

__all__ = ["AggregateConfig", "AuditConfig", "BiasConfig", "DemoConfig", "DistillConfig", "EvaluateConfig", "GenerateConfig", "OpinionDistillConfig", "PrepareConfig", "SelectConfig", "ServeConfig", "SurveyPairsConfig", "SweepConfig", "SynthSurveyConfig", "load_config", "parse_overrides", "save_config"]
