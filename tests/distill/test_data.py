"""Labelled-text frames: plain dtypes and the teacher agreement."""

import pandas as pd


def test_agreement_and_dtypes_survive_arrow_backed_frames_from_ray():
    """Ray Data hands back int64[pyarrow] labels, where bool == label is False everywhere."""
    import pyarrow as pa

    from demoscope.distill.data import plain_labels, teacher_agreement

    frame = pa.table({"text": ["a", "b", "c", "d"], "label": [1, 0, 1, 0],
                      "label_0": [0.2, 0.9, 0.6, 0.4], "label_1": [0.8, 0.1, 0.4, 0.6]}).to_pandas(types_mapper=pd.ArrowDtype)
    assert str(frame["label"].dtype) == "int64[pyarrow]"
    assert teacher_agreement(frame) == 0.5
    plain = plain_labels(frame)
    assert plain["label"].dtype == "int64" and plain["label_1"].dtype == "float64" and plain["text"].tolist() == list("abcd")
    assert ((plain["label_1"] > 0.5) == plain["label"]).mean() == 0.5
