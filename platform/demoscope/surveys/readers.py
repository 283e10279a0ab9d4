"""Read survey microdata with its labels: SPSS ``.sav``, Stata ``.dta``, CSV, Parquet.

SPSS and Stata files are read with pyreadstat exactly as SubPOP reads them (no
options: system- and user-missing values become NaN, codes stay numeric).
Every failure becomes a :class:`~demoscope.errors.SurveyFormatError` that
names the file, never a library traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.errors import SurveyFormatError

SURVEY_SUFFIXES = (".sav", ".zsav", ".dta", ".csv", ".parquet")


@dataclass
class SurveyMeta:
    """Column names, value labels (code -> label, in code order) and column labels."""

    path: Path
    columns: list[str]
    value_labels: dict[str, dict[float, str]] = field(default_factory=dict)
    column_labels: dict[str, str] = field(default_factory=dict)
    text_columns: set[str] = field(default_factory=set)  # columns of strings, not numeric codes


# CSV has no types: this many rows are read to tell text columns from coded ones.
CSV_TYPE_SAMPLE_ROWS = 1000


def _reader(path: Path):
    import pyreadstat

    suffix = path.suffix.lower()
    if suffix in (".sav", ".zsav"):
        return pyreadstat.read_sav
    if suffix == ".dta":
        return pyreadstat.read_dta
    return None


def _sorted_labels(labels: dict) -> dict[float, str]:
    """Value labels keyed by float code in ascending order (SPSS and Stata agree on this)."""
    out = {}
    for code, label in labels.items():
        try:
            out[float(code)] = str(label)
        except (TypeError, ValueError):
            continue  # Stata extended-missing labels (".d") are not answer codes
    return dict(sorted(out.items()))


def read_meta(path: str | Path) -> SurveyMeta:
    """Read only a file's metadata (cheap for SPSS and Stata; CSV/Parquet read the header)."""
    path = Path(path)
    if not path.is_file():
        raise SurveyFormatError(path, "file not found")
    read = _reader(path)
    try:
        if read is not None:
            _, meta = read(str(path), metadataonly=True)
            column_labels = dict(zip(meta.column_names, meta.column_labels or []))
            return SurveyMeta(
                path=path,
                columns=list(meta.column_names),
                value_labels={c: _sorted_labels(v) for c, v in meta.variable_value_labels.items()},
                column_labels={c: str(label) for c, label in column_labels.items() if label},
                text_columns={c for c, kind in meta.readstat_variable_types.items() if kind == "string"},
            )
        if path.suffix.lower() == ".csv":
            sample = pd.read_csv(path, nrows=CSV_TYPE_SAMPLE_ROWS)
            text = {c for c in sample.columns
                    if not pd.api.types.is_numeric_dtype(sample[c]) and sample[c].notna().any()}
            return SurveyMeta(path=path, columns=list(sample.columns), text_columns=text)
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            text = {f.name for f in schema if _is_text(f.type)}
            return SurveyMeta(path=path, columns=list(schema.names), text_columns=text)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault
        raise SurveyFormatError(path, f"cannot be read as a {path.suffix} survey file ({_describe(exc)})") from None
    raise SurveyFormatError(path, f"unsupported file type {path.suffix!r}; "
                            f"expected one of {', '.join(SURVEY_SUFFIXES)}")


def _is_text(kind) -> bool:
    """An Arrow string type, plain or dictionary-encoded (a pandas categorical of strings)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def read_columns(meta: SurveyMeta, columns: list[str]) -> dict[str, np.ndarray]:
    """Read ``columns`` of the file as float64 code arrays (NaN = missing).

    Stata integer columns with missing values come back from pyreadstat as
    Python ints mixed with NaN; they are cast here so that answers are never
    silently lost. A column of text raises an error naming it.
    """
    path = meta.path
    read = _reader(path)
    try:
        if read is not None:
            # dict output skips building a DataFrame we would only take apart again
            raw, _ = read(str(path), usecols=columns, output_format="dict")
        elif path.suffix.lower() == ".csv":
            raw = pd.read_csv(path, usecols=columns)
        else:
            raw = pd.read_parquet(path, columns=columns)
    except Exception as exc:  # noqa: BLE001
        raise SurveyFormatError(path, f"cannot be read ({_describe(exc)})") from None
    return {column: _as_codes(raw[column], path, column) for column in columns}


def _as_codes(values, path: Path, column: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        series = pd.Series(values)
        numeric = pd.to_numeric(series, errors="coerce")
        bad = series.notna() & numeric.isna()
        example = series[bad].iloc[0] if bad.any() else None
        raise SurveyFormatError(path, f"holds non-numeric value {example!r}; expected numeric codes", column) from None


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
