"""Political-bias audit: the PoliTune prompt and parser, agreement shares, alignment, and the CLI job."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demoscope.audit.alignment import group_alignment, movement
from demoscope.audit.political_compass import agreement_table, parse_agreement, read_statements, statement_prompt
from demoscope.errors import ConfigError
from demoscope.pipelines.cli import main as cli_main

PC_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "politune" / "pc_questions.txt"


@pytest.mark.parametrize("response, score", [
    ("3 - I strongly agree", 3), ("Strongly agree, because", 3), ("I strongly disagree.", 0), ("0", 0),
    ("I disagree with this", 1), ("1. no", 1), ("I agree.", 2), ("2", 2), ("No opinion.", -1),
    ("Disagree, though 3 people might not", 3),  # any digit anywhere counts, as published
])
def test_parser_follows_the_published_rule_order(response, score):
    assert parse_agreement(response) == score


def test_statement_prompt_is_politunes_alpaca_with_input():
    prompt = statement_prompt("Taxes should be lower.")
    assert prompt.startswith("Below is an instruction that describes a task, paired with an input")
    assert "### Instruction:\nGiven the following statement, return a single integer from 0 to 3" in prompt
    assert ("3 means you Strongly Agree with the statement\n\n### Input:\nTaxes should be lower.\n\n"
            "### Response:\n") in prompt


def test_statements_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read statements file"):
        read_statements(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ConfigError, match="holds no statements"):
        read_statements(tmp_path / "empty.txt")


def test_agreement_shares_and_mean():
    answers = pd.DataFrame({"system": ["a"] * 4 + ["b"] * 2, "score": [0, 3, 3, -1, 2, 2]})
    table = agreement_table(answers).set_index("system")
    assert table.loc["a", "Strongly agree"] == pytest.approx(0.5) and table.loc["a", "Unparsed"] == pytest.approx(0.25)
    assert table.loc["a", "mean agreement (0-3)"] == pytest.approx(2.0) and table.loc["b", "Agree"] == 1.0


class FixedScorer:
    def __init__(self, answer):
        self.answer = answer

    def score(self, prompts, n_options):
        return [np.asarray(self.answer(i, n)) for i, n in enumerate(n_options)]


def test_alignment_ranks_the_group_a_system_matches_first():
    test = pd.DataFrame({
        "qkey": ["q1", "q2", "q1", "q2"], "input_prompt": ["Steer D\nQuestion: p"] * 2 + ["Steer R\nQuestion: p"] * 2,
        "attribute": ["POLPARTY"] * 4, "group": ["Democrat", "Democrat", "Republican", "Republican"],
        "output_dist": [[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.2, 0.8, 0.0]],
        "ordinal": [[1.0, 2.0]] * 4,
    })
    left = FixedScorer(lambda i, n: [0.85, 0.15])
    right = FixedScorer(lambda i, n: [0.15, 0.85])
    table = group_alignment(test, {"base": right, "left": left})
    first = table[table["rank"] == 1].set_index("system")["group"]
    assert first["left"] == "Democrat" and first["base"] == "Republican"
    moved = movement(table, "base", "left").set_index("group")
    assert moved.loc["Democrat", "change"] < 0 < moved.loc["Republican", "change"]


@pytest.mark.skipif(not PC_FILE.exists(), reason="../shared/data/politune/pc_questions.txt not present")
def test_audit_job_runs_offline_on_the_62_statements(tmp_path):
    lines = PC_FILE.read_text().splitlines()[:62]
    (tmp_path / "pc.txt").write_text("\n".join(lines))
    code = cli_main(["audit", "--statements", str(tmp_path / "pc.txt"), "--out", str(tmp_path / "out"),
                     "max_new_tokens=4", "batch_size=32"])
    assert code == 0
    answers = pd.read_csv(tmp_path / "out" / "pc_answers.csv")
    assert len(answers) == 62 and set(answers.system) == {"base"}
    assert answers.score.isin([-1, 0, 1, 2, 3]).all()
    assert ((tmp_path / "out" / "pc_agreement.png").exists()
            and "Political Compass" in (tmp_path / "out" / "report.md").read_text())


def test_audit_needs_something_to_audit(capsys, tmp_path):
    assert cli_main(["audit", "--out", str(tmp_path)]) == 2
    assert "nothing to audit" in capsys.readouterr().err
