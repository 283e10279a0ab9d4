"""Small hand-made survey files whose distributions can be computed by hand."""

import numpy as np
import pandas as pd
import pyreadstat
import pytest

NAN = np.nan

PARTY = {1.0: "Republican", 2.0: "Democrat", 3.0: "Independent", 99.0: "Refused"}
IDEO = {1.0: "Very conservative", 2.0: "Conservative", 3.0: "Moderate", 4.0: "Liberal", 5.0: "Very liberal",
        99.0: "Refused"}
BLM = {1.0: "Strongly support", 2.0: "Somewhat support", 3.0: "Oppose", 99.0: "Refused"}


def atp_frame() -> pd.DataFrame:
    """Eight respondents of an ATP-style wave 68."""
    return pd.DataFrame({
        "QKEY": [1, 2, 3, 4, 5, 6, 7, 8.0],
        "WEIGHT_W68": [1.0, 2.0, 0.5, NAN, 1.5, 1.0, 2.0, 1.0],
        "F_PARTY_FINAL": [2, 2, 2, 2, 1, 1, 1, 3.0],
        "F_IDEO": [4, 5, 4, 4, 2, 2, 1, 3.0],
        "BLM_W68": [1, 2, 99, 1, 3, 3, NAN, 1.0],
        "GUN_W68": [1, 1, 2, 2, 2, 2, 1, 1.0],
    })


def write_atp(path, frame=None, labels=None):
    frame = atp_frame() if frame is None else frame
    labels = labels or {
        "F_PARTY_FINAL": PARTY, "F_IDEO": IDEO, "BLM_W68": BLM,
        "GUN_W68": {1.0: "Yes", 2.0: "No", 99.0: "Refused"},
    }
    pyreadstat.write_sav(
        frame, str(path), variable_value_labels=labels,
        column_labels={"BLM_W68": "BLM_W68. Do you support the Black Lives Matter movement?",
                       "GUN_W68": "GUN_W68. Own a gun?"},
    )
    return path


@pytest.fixture
def atp_file(tmp_path):
    return write_atp(tmp_path / "ATP W68.sav")


def gss_frame() -> pd.DataFrame:
    """Seven GSS-style respondents; refusals are missing, race dummies overlap."""
    return pd.DataFrame({
        "id": [1, 2, 3, 4, 5, 6, 7.0],
        "wtssnrps": [1.0, 2.0, 1.0, 3.0, NAN, 1.0, 2.0],
        "partyid": [0, 1, 6, 5, 0, 3, 6.0],
        "polviews": [1, 3, 7, 5, 2, 4, 6.0],
        "raceacs1": [1, 0, 1, 1, 0, 1, 0.0],
        "raceacs2": [0, 1, 0, 0, 1, 1, 0.0],
        "raceacs4": [0, 0, 0, 0, 0, 0, 1.0],
        "raceacs7": [1, 0, 0, 0, 0, 0, 0.0],
        "natspac": [1, 2, 3, 3, 1, NAN, 2.0],  # Too little, About right, Too much
    })


@pytest.fixture
def gss_file(tmp_path):
    path = tmp_path / "GSS2022.dta"
    pyreadstat.write_dta(
        gss_frame(), str(path),
        variable_value_labels={"natspac": {1.0: "too little", 2.0: "about right", 3.0: "too much"}},
    )
    return path
