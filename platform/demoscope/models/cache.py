"""Demoscope's model cache: folders built once (tiny models, converted pretrained ones), shared by every job."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from demoscope.io import current_umask


def cache_root() -> Path:
    """Demoscope's cache folder: ``$DEMOSCOPE_CACHE``, else ``~/.cache/demoscope``."""
    return Path(os.environ.get("DEMOSCOPE_CACHE") or Path.home() / ".cache" / "demoscope")


def build_once(target: Path, build: Callable[[Path], object], marker: str = "model.safetensors") -> Path:
    """``target``, built by ``build(folder)`` unless it already holds ``marker``; returns ``target``.

    The build goes to a temporary folder beside ``target`` and is renamed
    into place (``os.replace``), so readers never see a half-written model
    and two processes racing to build it both end with the same complete
    folder. Files and folder get the umask's modes (``mkdtemp`` makes 0700
    and safetensors writes 0600, which would hide a shared cache from other
    users).
    """
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        mode = 0o777 & ~current_umask()
        os.chmod(tmp, mode)
        for file in tmp.iterdir():
            if file.is_file():
                os.chmod(file, mode & 0o666)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process renamed its build in first; theirs is as good as ours.
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
