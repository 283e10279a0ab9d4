"""Typed errors with messages a user can act on.

Every error the CLI can show derives from :class:`DemoscopeError`; the CLI
prints its message and exits non-zero instead of showing a traceback.
"""


class DemoscopeError(Exception):
    """Base class for errors that carry a user-facing message."""


class ConfigError(DemoscopeError):
    """A job configuration is invalid: unknown key, bad value, unreadable YAML."""


class SurveyFormatError(DemoscopeError):
    """A survey file cannot be used: unreadable, missing a column, bad codes."""

    def __init__(self, path: str, message: str, column: str | None = None):
        self.path = str(path)
        self.column = column
        where = f"{self.path}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.reason = message


class SpecError(DemoscopeError):
    """A survey spec (YAML) or subpopulation table is malformed."""


class ModelError(DemoscopeError):
    """A model, tokenizer or adapter cannot be loaded or used: missing path, no safetensors, unknown adapter."""
