"""Shared command-line plumbing for every job.

Each job module declares a :class:`Job` (its config model, a description with
an example, and a ``run`` function); this module turns it into an argparse
parser whose flags are generated from the config's fields, loads the config
(``--config FILE.yaml``, flags, ``key=value`` overrides), and runs it with
clear errors instead of tracebacks. The same parser serves ``demoscope JOB``
and ``python -m demoscope.pipelines.JOB``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from demoscope.config.loading import load_config
from demoscope.errors import DemoscopeError

COMMON_HELP = """\
common options:
  --config FILE.yaml     load settings from YAML (flags and key=value override it)
  key=value ...          override any setting; nested keys as a.b=value
  --address ADDR         attach to a Ray cluster (default: RAY_ADDRESS, else a local loopback Ray)
  -v, --verbose          show Ray's own logs and progress bars
"""


@dataclass
class Job:
    """A runnable job: ``run(config, address, verbose) -> exit code``."""

    name: str
    description: str
    config: type[BaseModel]
    run: Callable[[Any, str | None, bool], int]
    flags: dict[str, str] | None = None  # field -> flag name, where it differs from --field-name
    # A job whose settings depend on one of them (train's --objective) gives the variant for a command line.
    variant: Callable[[list[str]], Job] | None = None

    def for_args(self, argv: list[str]) -> Job:
        """The job (or its variant) that ``argv`` asks for."""
        return self.variant(argv) if self.variant else self


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(element type, is_list) of a field annotation, unwrapping Optional."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def build_parser(job: Job, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the job's flags (one per config field) and the common options to ``parser``.

    A nested settings model gets one flag per field of its own, prefixed by
    its name (``lora.r`` is ``--lora-r``); mappings stay ``key=value``
    overrides (``adapters.name=path``).
    """
    parser = parser or argparse.ArgumentParser(prog=f"demoscope {job.name}")
    parser.description = job.description
    parser.epilog = COMMON_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, field in job.config.model_fields.items():
        flag = (job.flags or {}).get(name, "--" + name.replace("_", "-"))
        kind, _ = _base_type(field.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for sub, sub_field in kind.model_fields.items():
                _add_flag(parser, f"{flag}-{sub.replace('_', '-')}", f"{name}.{sub}", sub_field)
        else:
            _add_flag(parser, flag, name, field)
    parser.add_argument("--config", dest="_config", metavar="FILE.yaml", help=argparse.SUPPRESS)
    parser.add_argument("--address", dest="_address", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", dest="_verbose", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=argparse.SUPPRESS)
    return parser


def _add_flag(parser: argparse.ArgumentParser, flag: str, dest: str, field: Any) -> None:
    """One flag for one scalar, boolean or list field; mappings and deeper models are left to ``key=value``."""
    kind, is_list = _base_type(field.annotation)
    if typing.get_origin(kind) is dict or (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return
    default = None if is_list or field.is_required() else field.default
    text = field.description or dest
    if default is not None:
        text += f" (default: {default})"
    text = text.replace("%", "%%")  # argparse formats help with %; a literal "95%" would crash --help
    metavar = dest.rsplit(".", 1)[-1].upper()
    if kind is bool:
        parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
    elif is_list:
        # Say it once: many descriptions already end in "(repeatable)".
        repeatable = "" if "repeatable" in text else "; repeatable"
        parser.add_argument(flag, dest=dest, action="append", type=kind, default=None, metavar=metavar.rstrip("S"),
                            help=text + repeatable)
    else:
        parser.add_argument(flag, dest=dest, type=kind if kind in (int, float) else str, default=None, metavar=metavar,
                            help=text)


def _nested(flags: dict[str, Any]) -> dict[str, Any]:
    """``{"lora.r": 16, "lr": 0.1}`` -> ``{"lora": {"r": 16}, "lr": 0.1}`` (unset flags dropped)."""
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def config_from_args(job: Job, args: argparse.Namespace) -> BaseModel:
    """The job's validated config from parsed arguments: defaults < --config YAML < flags < key=value overrides."""
    flags = _nested({k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("overrides", "func")})
    return load_config(job.config, args._config, flags, args.overrides)


def run_parsed(job: Job, args: argparse.Namespace) -> int:
    """Load the config from parsed arguments and run the job; user errors exit 2 with a message."""
    try:
        return job.run(config_from_args(job, args), args._address, args._verbose)
    except DemoscopeError as exc:
        print(f"demoscope {job.name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # A job that knows what it leaves behind says so in the interrupt (train: its checkpoints, how to resume).
        print(f"demoscope {job.name}: {str(exc) or 'interrupted; no partial output was written'}", file=sys.stderr)
        # Re-raise so that a caller (a test session, a notebook) stops too; at the top of a script
        # the hook below keeps the traceback off the screen and Python exits by SIGINT (status 130).
        sys.excepthook = _quiet_interrupt_hook
        raise


def _quiet_interrupt_hook(kind, value, traceback) -> None:
    """``sys.excepthook`` for Ctrl-C at the top of a script: no traceback (the message was printed), exit by SIGINT."""
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    # Ray's atexit shutdown would make Python exit 1: stop Ray now, then end by SIGINT as Python itself would (130).
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def parse_and_run(job: Job, argv: list[str], prog: str) -> int:
    """Pick the job's variant for ``argv``, parse it with that variant's flags, and run it."""
    try:
        job = job.for_args(argv)
    except DemoscopeError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(job, argparse.ArgumentParser(prog=prog))
    return run_parsed(job, parser.parse_intermixed_args(argv))


def main_for(job: Job, argv: list[str] | None = None) -> int:
    """Entry point for ``python -m demoscope.pipelines.<job>`` (or ``demoscope.tune.<job>``,
    ``demoscope.serve.run``).
    """
    return parse_and_run(job, sys.argv[1:] if argv is None else argv, f"python -m {job.run.__module__}")
