"""Labelled-text files and frames: the reader's formats and checks, plain dtypes and the teacher agreement."""

import pandas as pd
import pytest

from demoscope.errors import ConfigError


def test_agreement_and_dtypes_survive_arrow_backed_frames_from_ray():
    """Ray Data hands back int64[pyarrow] labels, where bool == label is False everywhere."""
    import pyarrow as pa

    from demoscope.distill.data import plain_labels, teacher_agreement

    frame = pa.table({"text": ["a", "b", "c", "d"], "label": [1, 0, 1, 0], "label_0": [0.2, 0.9, 0.6, 0.4],
                      "label_1": [0.8, 0.1, 0.4, 0.6]}).to_pandas(types_mapper=pd.ArrowDtype)
    assert str(frame["label"].dtype) == "int64[pyarrow]"
    assert teacher_agreement(frame) == 0.5
    plain = plain_labels(frame)
    assert (plain["label"].dtype == "int64" and plain["label_1"].dtype == "float64"
            and plain["text"].tolist() == list("abcd"))
    assert ((plain["label_1"] > 0.5) == plain["label"]).mean() == 0.5


WRITERS = {".csv": lambda f, p: f.to_csv(p, index=False), ".parquet": lambda f, p: f.to_parquet(p),
           ".jsonl": lambda f, p: f.to_json(p, orient="records", lines=True)}


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_labelled_files_read_in_every_format_with_their_checks(tmp_path, suffix):
    from demoscope.distill.data import read_labelled

    frame = pd.DataFrame({"text": ["good film", "dull"], "label": [1, 0], "label_0": [0.1, 0.7],
                          "label_1": [0.9, 0.3]})
    path = tmp_path / f"l{suffix}"
    WRITERS[suffix](frame, path)
    got = read_labelled(path, soft=True)
    assert got.to_dict("list") == frame.to_dict("list") and got["label"].dtype == "int64"
    WRITERS[suffix](frame.drop(columns=["label_0", "label_1"]), path)
    with pytest.raises(ConfigError, match=rf"l\{suffix} lacks column\(s\) \['label_0', 'label_1'\] "
                                          rf"\(soft labels come from"):
        read_labelled(path, soft=True)
    WRITERS[suffix](frame.assign(label=[0, 2]), path)
    with pytest.raises(ConfigError, match=rf"l\{suffix}, row 1: label must be 0 or 1, got "):
        read_labelled(path)


def test_labelled_file_errors_name_the_file(tmp_path):
    from demoscope.distill.data import read_labelled

    with pytest.raises(ConfigError, match=r"labelled text file .*none\.csv does not exist"):
        read_labelled(tmp_path / "none.csv")
    (tmp_path / "l.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"l\.json: unsupported suffix '\.json' \(\.csv, \.jsonl, \.parquet\)"):
        read_labelled(tmp_path / "l.json")
    (tmp_path / "l.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ConfigError, match=r"labelled text file .*l\.parquet cannot be read"):
        read_labelled(tmp_path / "l.parquet")
