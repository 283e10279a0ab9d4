"""The aggregate job on a real local Ray: same numbers as in-process, clear exits, atomic outputs."""

import json

import pandas as pd
import pytest
import yaml

from demoscope.pipelines.aggregate import AggregateConfig, aggregate, compute, run
from demoscope.pipelines.cli import main as cli_main
from demoscope.surveys import (
    AggregateInputs,
    aggregate_files,
    load_subpopulations,
    read_distributions,
)
from tests.surveys.conftest import write_atp

pytestmark = pytest.mark.ray


@pytest.fixture
def two_waves(tmp_path):
    from demoscope.surveys.synthetic import generate_world

    world = generate_world(tmp_path / "world", waves=2, respondents=400, seed=3, gss=True, questions_per_wave=6)
    return world


def test_ray_job_equals_in_process_aggregation(local_ray, two_waves):
    paths = [str(p) for p in two_waves.files]
    codebook = str(two_waves.codebook_path)
    ours, acc = compute(AggregateConfig(inputs=paths, codebook=codebook, progress=False))
    expected, _ = aggregate_files(paths, AggregateInputs.build(load_subpopulations("22"), codebook_path=codebook))
    assert acc.files == 3 and not acc.failed_files
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), expected.reset_index(drop=True))


def test_run_writes_parquet_csv_summary_and_config(local_ray, two_waves, tmp_path):
    out = tmp_path / "agg"
    config = AggregateConfig(inputs=[str(two_waves.files[0].parent)], out=str(out),
                             codebook=str(two_waves.codebook_path), progress=False)
    assert run(config) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "distributions.csv", "distributions.parquet",
                                                     "summary.json"]
    parquet, csv = read_distributions(out / "distributions.parquet"), read_distributions(out / "distributions.csv")
    assert list(parquet.columns) == ["qkey", "attribute", "group", "question", "options", "responses", "refusal_rate",
                                     "ordinal", "n", "n_eff", "weight_sum", "source"]
    assert parquet.responses.tolist() == csv.responses.tolist()  # CSV lists are Python literals
    assert yaml.safe_load((out / "config.yaml").read_text())["codebook"] == str(two_waves.codebook_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 3 and summary["rows"] == len(parquet)


def test_failed_file_exits_nonzero_unless_keep_going(local_ray, tmp_path):
    (tmp_path / "in").mkdir()
    write_atp(tmp_path / "in" / "good.sav")
    (tmp_path / "in" / "bad.dta").write_bytes(b"\x00not stata")
    base = dict(inputs=[str(tmp_path / "in")], progress=False)
    assert run(AggregateConfig(out=str(tmp_path / "a"), **base)) == 1
    assert run(AggregateConfig(out=str(tmp_path / "b"), keep_going=True, **base)) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["failed_files"] == [str(tmp_path / "in" / "bad.dta")]
    assert set(read_distributions(tmp_path / "a" / "distributions.parquet").source) == {"good.sav"}
    result = aggregate(AggregateConfig(out=str(tmp_path / "c"), **base))  # the Python API: what the command exits on
    assert result.written and result.failed == [str(tmp_path / "in" / "bad.dta")]
    assert result.summary == json.loads((tmp_path / "c" / "summary.json").read_text())
    assert len(result.distributions) == len(read_distributions(tmp_path / "c" / "distributions.parquet"))


def test_cli_rejects_unknown_key_listing_valid_ones(capsys, tmp_path):
    code = cli_main(["aggregate", "--input", str(tmp_path), "epochs=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown config key 'epochs'" in err and "keep_going" in err and "subpopulations" in err


def test_cli_config_file_flags_and_overrides_compose(local_ray, tmp_path):
    (tmp_path / "in").mkdir()
    write_atp(tmp_path / "in" / "ATP W68.sav")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({"inputs": [str(tmp_path / "in")], "out": str(tmp_path / "x"),
                                                       "subpopulations": "61"}))
    code = cli_main(["aggregate", "--config", str(tmp_path / "job.yaml"), "--out", str(tmp_path / "y"),
                     "progress=false"])
    assert code == 0
    saved = yaml.safe_load((tmp_path / "y" / "config.yaml").read_text())
    assert saved["out"] == str(tmp_path / "y") and saved["subpopulations"] == "61" and saved["progress"] is False
    assert not (tmp_path / "x").exists()


def test_missing_input_folder_contents_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert cli_main(["aggregate", "--input", str(tmp_path / "empty")]) == 2
    assert "holds no survey files" in capsys.readouterr().err


def test_failed_rerun_leaves_the_previous_outputs_byte_identical(local_ray, tmp_path, capsys):
    good, bad = write_atp(tmp_path / "good.sav"), tmp_path / "bad.sav"
    bad.write_bytes(b"$FL2 not SPSS")
    out = tmp_path / "agg"
    assert run(AggregateConfig(inputs=[str(good)], out=str(out), progress=False)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["config.yaml", "distributions.csv", "distributions.parquet", "summary.json"]
    capsys.readouterr()
    assert run(AggregateConfig(inputs=[str(bad)], out=str(out), progress=False)) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no debris either
    printed = capsys.readouterr()
    assert "cannot be read as a .sav survey file" in printed.out and "left unchanged" in printed.err
