"""Projected-gradient shards: atomic Parquet per (source, shard), read back in order, readable as one dataset."""

import numpy as np
import pytest

from demoscope.errors import ConfigError
from demoscope.selection import storage
from demoscope.selection.projection import RademacherProjection


def test_shards_round_trip_in_shard_order(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for source in ("alpaca-skill_1", "flan.task2"):
        parts = [(rng.standard_normal((n, 6)).astype(np.float32), rng.standard_normal(n)) for n in (3, 4, 2)]
        # Written out of order: reading sorts by shard index, not by file time.
        for shard in (2, 0, 1):
            z, outputs = parts[shard]
            storage.write_shard(tmp_path, source, shard, z, outputs, sample_ids=range(10 * shard, 10 * shard + len(z)))
        written[source] = parts
    assert storage.list_sources(tmp_path) == ["alpaca-skill_1", "flan.task2"]
    for source, parts in written.items():
        got = storage.read_source(tmp_path, source)
        np.testing.assert_array_equal(got.z, np.concatenate([z for z, _ in parts]))
        np.testing.assert_array_equal(got.outputs, np.concatenate([o for _, o in parts]))
        assert got.sample_ids.tolist() == [0, 1, 2, 10, 11, 12, 13, 20, 21]
        assert got.z.dtype == np.float32
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries
    assert set(storage.read_gradients(tmp_path)) == set(written)


def test_metadata_records_the_projection(tmp_path):
    projection = RademacherProjection(1000, 6, seed=4)
    storage.write_metadata(tmp_path, projection, ["a.lora_A", "a.lora_B"], "toy", extra={"model": "tiny"})
    meta = storage.read_metadata(tmp_path)
    assert meta["parameter_names"] == ["a.lora_A", "a.lora_B"] and meta["clamp"] == "toy" and meta["model"] == "tiny"
    np.testing.assert_array_equal(RademacherProjection.from_dict(meta["projection"]).matrix(), projection.matrix())
    with pytest.raises(ConfigError, match="meta.json"):
        storage.read_metadata(tmp_path / "elsewhere")


def test_shards_read_as_one_hive_partitioned_dataset(tmp_path):
    import pyarrow.dataset as ds

    storage.write_shard(tmp_path, "a", 0, np.ones((2, 3)), np.zeros(2))
    storage.write_shard(tmp_path, "b", 0, np.zeros((1, 3)), np.ones(1))
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("source").to_pylist()) == ["a", "a", "b"]
    assert table.schema.field("gradient").type.list_size == 3


def test_bad_names_and_shapes_are_refused(tmp_path):
    with pytest.raises(ConfigError):
        storage.write_shard(tmp_path, "../escape", 0, np.zeros((1, 2)), np.zeros(1))
    with pytest.raises(ValueError):
        storage.write_shard(tmp_path, "a", 0, np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ConfigError, match="no gradient shards"):
        storage.read_source(tmp_path, "missing")


def test_a_rerun_keeps_shards_of_the_same_fingerprint_and_clears_others(tmp_path):
    projection = RademacherProjection(12, 4, seed=0)
    storage.write_metadata(tmp_path, projection, ["a"], "toy", extra={"fingerprint": "abc"})
    storage.write_shard(tmp_path, "done", 0, np.ones((2, 4)), np.zeros(2))
    assert storage.reusable_sources(tmp_path, "abc") == ["done"]
    assert storage.reusable_sources(tmp_path, "other") == []  # another adapter or data: nothing stale survives
    assert storage.list_sources(tmp_path) == [] and not (tmp_path / storage.META_FILE).exists()
    assert storage.reusable_sources(tmp_path / "fresh", "abc") == []
