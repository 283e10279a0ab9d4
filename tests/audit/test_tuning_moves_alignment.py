"""PoliTune's claim, end to end on CPU: DPO toward one side's answers moves the model's own opinions to that side."""


from demoscope.audit.alignment import group_alignment, movement
from demoscope.models import TransformersOptionScorer, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.training.lora import LoraSettings
from demoscope.training.opinion_data import read_prepared
from demoscope.training.preference import train_dpo
from demoscope.training.preference_data import survey_preferences

LEFT = [("POLPARTY", "Democrat"), ("POLIDEOLOGY", "Liberal")]
RIGHT = [("POLPARTY", "Republican"), ("POLIDEOLOGY", "Conservative")]


def test_survey_pairs_prefer_the_toward_groups_answer(prepared):
    train = read_prepared(prepared["train"])
    pairs = survey_preferences(train, toward=LEFT, away=RIGHT)
    assert (len(pairs) > 0 and pairs.prompt.str.startswith("Question:").all()
            and pairs.prompt.str.endswith("Answer:").all())
    flipped = survey_preferences(train, toward=RIGHT, away=LEFT)
    assert (flipped.chosen.tolist(), flipped.rejected.tolist()) == (pairs.rejected.tolist(), pairs.chosen.tolist())


def test_left_dpo_moves_the_model_toward_democrats_and_liberals(prepared, tmp_path):
    train = read_prepared(prepared["train"])
    pairs = survey_preferences(train, toward=LEFT, away=RIGHT)
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    trainer = train_dpo(model, tokenizer, pairs, tmp_path, lora=LoraSettings(), beta=0.1, lr=1e-2, epochs=8,
                        batch_size=4)
    tuned = trainer.model.eval()
    scorers = {"base": TransformersOptionScorer(tuned, tokenizer, adapter=None),
               "left": TransformersOptionScorer(tuned, tokenizer, adapter="default")}
    moved = movement(group_alignment(train, scorers), "base", "left").set_index(["attribute", "group"])["change"]
    assert moved[("POLPARTY", "Democrat")] < 0 and moved[("POLIDEOLOGY", "Liberal")] < 0
    assert moved[("POLPARTY", "Democrat")] < moved[("POLPARTY", "Republican")]
    assert moved[("POLIDEOLOGY", "Liberal")] < moved[("POLIDEOLOGY", "Conservative")]


def test_survey_pairs_job_writes_the_pairs_and_rejects_a_bad_group_spec(prepared, tmp_path, capsys):
    from demoscope.pipelines.cli import main as cli_main
    from demoscope.training.preference_data import read_preferences

    out = tmp_path / "left.jsonl"
    assert cli_main(["survey-pairs", "--split", str(prepared["train"]), "--out", str(out)]) == 0
    expected = survey_preferences(read_prepared(prepared["train"]), toward=LEFT, away=RIGHT)
    assert read_preferences(out).equals(expected)
    assert cli_main(["survey-pairs", "--split", str(prepared["train"]), "--toward", "Democrat", "--out", str(out)]) == 2
    assert "expected ATTRIBUTE=group" in capsys.readouterr().err
    assert cli_main(["survey-pairs", "--split", str(prepared["train"]), "--toward", "POLPARTY=Whig",
                     "--out", str(out)]) == 2
    assert "not in the split" in capsys.readouterr().err
