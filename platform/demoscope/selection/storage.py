"""Projected gradients on disk: one Parquet file per (source, shard), beside the pre-trained outputs.

Layout under ``root`` (hive-style, so ``pyarrow.dataset``/Ray Data's
``read_parquet(root)`` read every shard with a ``source`` column)::

    root/meta.json                              projection, parameter names, clamp
    root/source=<name>/shard-00000.parquet      sample_id, output, gradient

``output`` is the pre-trained output ``f_i`` (mean clamped log-odds at
theta*) and ``gradient`` the projected gradient ``z_i`` (fixed-size list of
float32). Every file is written atomically, so a shard exists whole or not
at all and a Ray Data job can write shards per source in parallel.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demoscope.errors import ConfigError
from demoscope.io import atomic_write, atomic_write_text
from demoscope.selection.projection import RademacherProjection

META_FILE = "meta.json"
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHARD = re.compile(r"^shard-(\d+)\.parquet$")


@dataclass(frozen=True)
class SourceGradients:
    """All stored samples of one source: ``sample_ids [n]``, ``outputs [n]``, ``z [n, d]``."""

    sample_ids: np.ndarray
    outputs: np.ndarray
    z: np.ndarray


def _check_source(source: str) -> str:
    if not _SOURCE.match(str(source)):
        raise ConfigError(f"source name {source!r} must match {_SOURCE.pattern} (it becomes a folder name)")
    return str(source)


def shard_path(root: str | Path, source: str, shard: int) -> Path:
    """Where shard ``shard`` of ``source`` lives."""
    if shard < 0:
        raise ConfigError(f"shard index must be >= 0, got {shard}")
    return Path(root) / f"source={_check_source(source)}" / f"shard-{shard:05d}.parquet"


def write_metadata(root: str | Path, projection: RademacherProjection, parameter_names: Sequence[str], clamp: str,
                   extra: dict[str, Any] | None = None) -> Path:
    """Record what the shards were computed with: the projection's definition, the flattening order, the clamp."""
    meta = {"projection": projection.to_dict(), "parameter_names": list(parameter_names), "clamp": clamp,
            **(extra or {})}
    return atomic_write_text(Path(root) / META_FILE, json.dumps(meta, indent=2))


def read_metadata(root: str | Path) -> dict[str, Any]:
    """The ``meta.json`` written by :func:`write_metadata`."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise ConfigError(f"{root} has no {META_FILE}; not a projected-gradient folder")
    return json.loads(path.read_text())


def write_shard(root: str | Path, source: str, shard: int, z: np.ndarray, outputs: np.ndarray,
                sample_ids: Iterable[int] | None = None) -> Path:
    """Write one shard atomically; ``sample_ids`` default to ``0..n-1`` (pass global ids across shards)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    z = np.ascontiguousarray(z, dtype=np.float32)
    outputs = np.asarray(outputs, dtype=np.float64)
    if z.ndim != 2 or outputs.shape != (z.shape[0],):
        raise ValueError(f"need z [n, d] and outputs [n], got {z.shape} and {outputs.shape}")
    ids = np.arange(z.shape[0], dtype=np.int64) if sample_ids is None else np.asarray(list(sample_ids), np.int64)
    if ids.shape != (z.shape[0],):
        raise ValueError(f"{ids.shape[0]} sample ids for {z.shape[0]} rows")
    gradient = pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1), type=pa.float32()), z.shape[1])
    table = pa.table({"sample_id": ids, "output": outputs, "gradient": gradient})
    return atomic_write(shard_path(root, source, shard), lambda tmp: pq.write_table(table, tmp))


def list_sources(root: str | Path) -> list[str]:
    """Sources that have at least one shard, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in root.glob("source=*")
                  if p.is_dir() and any(p.glob("shard-*.parquet")))


def read_source(root: str | Path, source: str) -> SourceGradients:
    """All shards of ``source`` concatenated in shard order."""
    import pyarrow.parquet as pq

    folder = Path(root) / f"source={_check_source(source)}"
    shards = sorted((int(m.group(1)), p) for p in folder.glob("shard-*.parquet") if (m := _SHARD.match(p.name)))
    if not shards:
        raise ConfigError(f"no gradient shards for source {source!r} under {root}")
    ids, outputs, zs = [], [], []
    for _, path in shards:
        table = pq.read_table(path)
        column = table.column("gradient").combine_chunks()
        dim = column.type.list_size
        ids.append(table.column("sample_id").to_numpy())
        outputs.append(table.column("output").to_numpy())
        zs.append(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False))
    return SourceGradients(np.concatenate(ids), np.concatenate(outputs), np.concatenate(zs))


def read_gradients(root: str | Path, sources: Sequence[str] | None = None) -> dict[str, SourceGradients]:
    """``{source: SourceGradients}`` for ``sources`` (default: every stored source)."""
    return {s: read_source(root, s) for s in (sources if sources is not None else list_sources(root))}


def reusable_sources(root: str | Path, fingerprint: str) -> list[str]:
    """Sources whose shards a re-run can keep: all stored ones if ``meta.json`` has this ``fingerprint``.

    Shards computed for another adapter, projection or data (another
    fingerprint, or none) are removed, so a folder never mixes two runs.
    """
    root = Path(root)
    meta = root / META_FILE
    if meta.is_file() and read_metadata(root).get("fingerprint") == fingerprint:
        return list_sources(root)
    for folder in root.glob("source=*"):
        shutil.rmtree(folder, ignore_errors=True)
    meta.unlink(missing_ok=True)
    return []
