"""The evaluate job's report: summaries with intervals, plots, metrics.json and report.md from the predictions.

Reads what :func:`demoscope.pipelines.evaluate.evaluate` wrote (one row per
question and group, with ``dist_``/``wd_``/``tv_``/``js_``/``kl_<system>``,
and the noise floor and calibrated scores where they were computed) and
composes the library's summaries (:mod:`demoscope.metrics`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from demoscope.errors import ConfigError
from demoscope.io import atomic_write_text
from demoscope.metrics.row_scores import DISTANCE_METRICS, NOISE_FLOOR

if TYPE_CHECKING:
    from demoscope.pipelines.evaluate import EvaluateConfig

CALIBRATED = "_calibrated"
ORDER_AVERAGED = "_order_avg"


def systems_for(config: EvaluateConfig) -> list[str]:
    """Report order: the system under test first, then its baselines (``--baselines-only``: the model-free ones)."""
    if config.baselines_only:
        return ["other_groups", "uniform"]
    if getattr(config, "systems", None):
        return [*config.systems, "uniform"]
    if config.guide_model is not None:
        return ["steered", "large", "small_tuned", "small_untuned", "uniform"]
    if config.adapter is None:
        return ["model", "uniform"]
    return ["tuned", "base", "uniform"] if config.compare_base else ["tuned", "uniform"]


def calibrated_systems(config: EvaluateConfig) -> list[str]:
    """The systems ``--calibrate`` rescales: the one under test (a model's answers, not a baseline's)."""
    if not getattr(config, "calibrate", None) or config.baselines_only:
        return []
    return list(config.systems) if getattr(config, "systems", None) else systems_for(config)[:1]


def report_systems(config: EvaluateConfig, written: set[str]) -> list[str]:
    """The systems of the report: :func:`systems_for`, each calibrated one right after its system, the floor last."""
    systems = []
    for system in systems_for(config):
        systems.append(system)
        systems += [system + suffix for suffix in (CALIBRATED, ORDER_AVERAGED) if f"wd_{system}{suffix}" in written]
    return systems + ([NOISE_FLOOR] if f"wd_{NOISE_FLOOR}" in written else [])


def steerability_systems(config: EvaluateConfig) -> list[str]:
    """The systems whose unsteered answers are scored too (``--steerability``): the models, not the baselines."""
    if (not getattr(config, "steerability", False) or config.baselines_only or config.guide_model is not None
            or getattr(config, "systems", None)):
        return []
    return [s for s in systems_for(config) if s in ("model", "tuned", "base")]


def report(config: EvaluateConfig, predictions_dir: Path, out: Path) -> dict:
    """Summaries, plots and a Markdown report from the written predictions.

    Every number carries a percentile-bootstrap interval that resamples
    questions (or rows, with ``bootstrap: row``); differences between the
    first system and each other one are paired (same resamples for both).
    Rows whose ``wd_<system>`` is NaN (non-ordinal questions) are skipped.
    """
    import pyarrow.parquet as pq
    from rich.console import Console

    from demoscope.metrics.baselines import BASELINE_NOTES
    from demoscope.metrics.opinion import BOOTSTRAP_NOTES, summarize
    from demoscope.metrics.steerability import steerability
    from demoscope.reports import markdown_table, plot_group_wasserstein, plot_wd_histogram
    from demoscope.reports.tables import interval_cell

    # Predictions written without --steerability (or by an older version) have no unsteered columns.
    written = set(pq.ParquetDataset(predictions_dir).schema.names)
    systems = report_systems(config, written)
    steered = [s for s in steerability_systems(config) if f"wd_{s}_unsteered" in written]
    covered = [s for s in systems if f"missed_{s}" in written]  # vLLM top-k mode only
    extra = [f"{m}_{s}" for s in systems for m in DISTANCE_METRICS if f"{m}_{s}" in written]
    extra += [c for c in (f"tv_{NOISE_FLOOR}", "n_eff") if c in written]
    extra += [f"order_tv_{s}" for s in systems if f"order_tv_{s}" in written]
    columns = ["qkey", "attribute", "group", *[f"wd_{s}" for s in systems], *[f"wd_{s}_unsteered" for s in steered],
               *[f"missed_{s}" for s in covered], *extra]
    predictions = pd.read_parquet(predictions_dir, columns=list(dict.fromkeys(columns)))
    if predictions.empty:
        raise ConfigError(f"no rows left to score in {config.test_file} (all excluded?)")
    if "n_eff" in predictions:
        # Rows where one side of the comparison rests on few people (cf. --min-n-eff); the floor says how few.
        predictions["n_eff"] = predictions["n_eff"].astype(float)
    kind = getattr(config, "bootstrap", "question")  # EvaluateConfig.bootstrap, where present
    summary = summarize(predictions, systems, n_boot=config.n_boot, seed=config.seed, bootstrap=kind)
    plot_group_wasserstein(summary["per_group"], systems, out / "wd_by_group.png")
    plot_wd_histogram(predictions, systems, out / "wd_histogram.png")
    overall, differences, per_group = summary["overall"], summary["differences"], summary["per_group"]
    method = summary["bootstrap"]["description"]
    metrics = {
        "rows": len(predictions), "questions": int(predictions["qkey"].nunique()),
        "non_ordinal_rows": int(predictions[f"wd_{systems[0]}"].isna().sum()),
        "bootstrap": summary["bootstrap"],
        "overall": overall.to_dict(orient="records"),
        "differences": differences.to_dict(orient="records"),
        "gap_reduction": {s: g for s, g in summary["gap_reduction"].items() if s != NOISE_FLOOR},
        "per_group": per_group.to_dict(orient="records"),
        "steerability": {s: steerability(predictions, s).to_dict(orient="records") for s in steered},
        "letter_coverage": {s: {"incomplete_share": float((predictions[f"missed_{s}"] > 0).mean()),
                                "mean_missed_mass_bound": float(predictions[f"missed_{s}"].mean()),
                                "max_missed_mass_bound": float(predictions[f"missed_{s}"].max())} for s in covered},
        "distances": distance_summary(predictions, systems, config, kind),
        "noise_floor": noise_floor_summary(predictions, overall, config),
        "calibration": calibration_summary(config, differences),
        "option_orders": order_summary(predictions, systems, config, kind),
        "leaderboard": (leaderboard_summary(predictions, systems, config, kind, out)
                        if getattr(config, "systems", None) else []),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    shown_overall = pd.DataFrame({
        "system": overall["system"], "mean WD": overall["mean"],
        "95% interval": [f"[{r.low:.4f}, {r.high:.4f}]" for r in overall.itertuples()],
        "rows": overall["n"].astype(int), "questions": overall["questions"].astype(int)})
    shown_differences = pd.DataFrame({
        "difference": differences["difference"], "mean": differences["mean"],
        "95% interval": [f"[{r.low:.4f}, {r.high:.4f}]" for r in differences.itertuples()],
        "excludes 0": ["yes" if x else "no" for x in differences["excludes_zero"]],
        # Against the floor the difference is the excess a perfect model would remove; a "gap" ratio means nothing.
        "relative gap reduction": [f"{r.gap_reduction:.1%} [{r.gap_low:.1%}, {r.gap_high:.1%}]"
                                   if r.other != NOISE_FLOOR else "" for r in differences.itertuples()],
        "rows": differences["n"].astype(int), "questions": differences["questions"].astype(int)})
    cells = per_group.assign(cell=[interval_cell(r.mean, r.low, r.high) for r in per_group.itertuples()])
    wide = cells.pivot(index=["attribute", "group"], columns="system", values="cell")[systems]
    counts = cells[cells.system == systems[0]].set_index(["attribute", "group"])["n"].rename("n")
    wide = pd.concat([counts, wide], axis=1).reset_index()
    scored_by = ("No model: baselines only." if getattr(config, "baselines_only", False) else
                 f"Model `{config.model}`{f', adapter `{config.adapter}`' if config.adapter else ''}."
                 f"{_guide_note(config)}")
    leaders = getattr(config, "systems", None) or {}
    if leaders:
        listed = [f"`{name}` = `{spec.model}`" + (f" + `{spec.adapter}`" if spec.adapter else "")
                  for name, spec in leaders.items()]
        scored_by = "Leaderboard of " + ", ".join(listed) + "."
    baselines = "\n".join(f"- {BASELINE_NOTES[s]}" for s in systems if s in BASELINE_NOTES)
    text = f"""# Opinion evaluation

Test set `{config.test_file}`: {metrics['rows']:,} rows, {metrics['questions']} questions
({metrics['non_ordinal_rows']} rows of non-ordinal questions have no WD and are skipped).
{scored_by}

Baselines:
{baselines}

Intervals: {method}. {BOOTSTRAP_NOTES[kind]}

## Mean Wasserstein distance (lower is better)

{markdown_table(shown_overall, floatfmt=".4f")}

## Differences in mean WD (paired: both systems on the same resamples)

Negative means `{systems[0]}` is closer to the humans. The relative gap reduction is
(other - {systems[0]}) / other of the mean WDs.

{markdown_table(shown_differences, floatfmt=".4f")}

## Per subpopulation (mean WD [95% interval]; n rows per group)

{markdown_table(wide)}

![WD by group](wd_by_group.png)

![WD histogram](wd_histogram.png)
{_leaderboard_section(metrics.get("leaderboard"))}{_orders_section(metrics["option_orders"])}{_distances_section(metrics["distances"])}{_noise_floor_section(metrics["noise_floor"])}\
{_calibration_section(metrics["calibration"])}\
{_steerability_section(metrics["steerability"])}{_coverage_section(metrics["letter_coverage"], config)}"""
    atomic_write_text(out / "report.md", text)
    console = Console(soft_wrap=True)
    console.print(method)
    for row in overall.itertuples():
        console.print(f"{row.system:>13}: mean WD {row.mean:.4f}  [{row.low:.4f}, {row.high:.4f}]")
    for row in differences.itertuples():
        gap = f"  gap reduction {row.gap_reduction:.1%}" if row.other != NOISE_FLOOR else "  (excess over the floor)"
        console.print(f"{row.difference:>28}: {row.mean:+.4f}  [{row.low:+.4f}, {row.high:+.4f}]{gap}")
    console.print(f"report: {out / 'report.md'}")
    return metrics


def _coverage_section(coverage: dict[str, dict], config: EvaluateConfig) -> str:
    """How often vLLM's top-k log-probs left out a scored letter (empty in exact mode and with Transformers)."""
    if not coverage:
        return ""
    lines = [f"- `{s}`: {c['incomplete_share']:.1%} of rows had a letter outside the top {config.top_k} (counted 0); "
             f"missed mass at most {c['mean_missed_mass_bound']:.2e} per row on average, "
             f"{c['max_missed_mass_bound']:.2e} "
             "at worst" for s, c in coverage.items()]
    return ("\n## Letter coverage (vLLM top-k log-probs)\n\nA letter outside the top k counts 0, as in SubPOP; "
            "`letter_logprobs: exact` reads every letter.\n\n" + "\n".join(lines) + "\n")


def _steerability_section(tables: dict[str, list[dict]]) -> str:
    """Per system, the steered-versus-unsteered table (empty without ``--steerability``)."""
    from demoscope.reports import markdown_table

    if not tables:
        return ""
    parts = ["\n## Steerability: is the steered answer closer to the group than the unsteered one?\n",
             "Per row, the WD to the group's humans of the steered answer and of the same question asked "
             "without the steering prefix. `closer` is the share of rows where steering helped; `gain` the mean "
             "WD reduction (positive: steering moved the answer towards the group).\n"]
    for system, records in tables.items():
        table = pd.DataFrame(records).rename(columns={"closer_share": "closer", "mean_gain": "gain"})
        parts.append(f"### `{system}`\n\n{markdown_table(table, floatfmt='.4f')}\n")
    return "\n".join(parts)


def _guide_note(config: EvaluateConfig) -> str:
    if config.guide_model is None:
        return ""
    return (f"\nWeak-to-strong: `steered` = `large` reweighted by `{config.guide_model}` with adapter "
            f"`{config.guide_adapter}` against itself without it, beta {config.guide_beta:g} "
            "(p ∝ p_large · (p_tuned / p_untuned)^beta).")


def distance_summary(predictions: pd.DataFrame, systems: list[str], config: EvaluateConfig, kind: str) -> dict:
    """Per system, mean TV, JS and KL with intervals, and the SimBench-style score with its paired interval.

    The score's interval comes from resampling the system's and the uniform
    baseline's TVs together (:func:`~demoscope.metrics.bootstrap.paired_bootstrap_ci`:
    ``100 * gap_reduction``, the same number on the full set).
    """
    from demoscope.metrics.bootstrap import bootstrap_ci, paired_bootstrap_ci
    from demoscope.metrics.row_scores import simbench_score

    clusters = predictions["qkey"].to_numpy() if kind == "question" else None
    settings = {"n_boot": config.n_boot, "seed": config.seed, "clusters": clusters}
    rows = []
    for system in systems:
        if not all(f"{metric}_{system}" in predictions for metric in DISTANCE_METRICS):
            continue
        row = {"system": system}
        for metric in DISTANCE_METRICS:
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = bootstrap_ci(predictions[f"{metric}_{system}"],
                                                                                    **settings)
        if f"wd_{system}" in predictions:  # OpinionQA's representativeness: 1 - the mean range-normalised WD
            wd, wd_low, wd_high = bootstrap_ci(predictions[f"wd_{system}"], **settings)
            row["representativeness"], row["representativeness_low"], row["representativeness_high"] = (
                1 - wd, 1 - wd_high, 1 - wd_low)
        if "tv_uniform" in predictions:
            model, base = predictions[f"tv_{system}"].to_numpy(float), predictions["tv_uniform"].to_numpy(float)
            row["simbench"] = simbench_score(model, base)
            paired = paired_bootstrap_ci(model, base, **settings)
            row["simbench_low"], row["simbench_high"] = 100 * paired["gap_low"], 100 * paired["gap_high"]
        rows.append(row)
    from demoscope.metrics.distances import KL_SMOOTHING

    return {"systems": rows, "kl_smoothing": KL_SMOOTHING,
            "definitions": {"tv": "0.5 * sum |p - q|", "js": "Jensen-Shannon distance, log base 2 (sqrt of the "
                            "divergence), in [0, 1]", "kl": f"KL(humans || model) in nats, model smoothed by "
                            f"{KL_SMOOTHING:g} per option", "simbench": "100 * (1 - TV / mean TV of uniform over all "
                            "scored options), averaged over rows (SimBench)",
                            "representativeness": "1 - mean WD (OpinionQA's, with its range-normalised WD)"}}


def noise_floor_summary(predictions: pd.DataFrame, overall: pd.DataFrame, config: EvaluateConfig) -> dict:
    """The floor's mean (WD and TV), each system's excess over it, and the rows resting on few respondents."""
    if f"wd_{NOISE_FLOOR}" not in predictions:
        return {"available": False}
    floor = predictions[f"wd_{NOISE_FLOOR}"]
    means = dict(zip(overall["system"], overall["mean"]))
    low = predictions["n_eff"] < config.min_n_eff
    return {
        "available": True, "draws": config.noise_floor_draws, "rows": int(floor.notna().sum()),
        "wd": float(floor.mean()), "tv": float(predictions[f"tv_{NOISE_FLOOR}"].mean()),
        "excess_wd": {s: float(m - floor.mean()) for s, m in means.items() if s != NOISE_FLOOR},
        "min_n_eff": config.min_n_eff, "rows_below_min_n_eff": int(low.sum()),
        "median_n_eff": float(predictions["n_eff"].median()),
    }


def calibration_summary(config: EvaluateConfig, differences: pd.DataFrame) -> dict:
    """What ``--calibrate`` did and gained: the paired WD difference of each system against its calibrated self."""
    systems = calibrated_systems(config)
    if not systems:
        return {}
    gains = differences[differences["other"].isin([s + CALIBRATED for s in systems])]
    return {"k": config.calibrate, "by": config.calibrate_by, "metric": "wd",
            "gain": gains[["difference", "mean", "low", "high", "excludes_zero"]].to_dict(orient="records")}


def _distances_section(distances: dict) -> str:
    from demoscope.reports import markdown_table

    if not distances["systems"]:
        return ""
    table = pd.DataFrame([{
        "system": r["system"], **{m.upper(): f"{r[m]:.4f} [{r[f'{m}_low']:.4f}, {r[f'{m}_high']:.4f}]"
                                  for m in DISTANCE_METRICS},
        "SimBench score": (f"{r['simbench']:.1f} [{r['simbench_low']:.1f}, {r['simbench_high']:.1f}]"
                           if "simbench" in r else ""),
        "representativeness": (f"{r['representativeness']:.4f} [{r['representativeness_low']:.4f}, "
                               f"{r['representativeness_high']:.4f}]" if "representativeness" in r else "")}
        for r in distances["systems"]])
    names = {"tv": "TV", "js": "JS", "kl": "KL", "simbench": "SimBench", "representativeness": "representativeness"}
    notes = "; ".join(f"{names[k]}: {v}" for k, v in distances["definitions"].items())
    return (f"\n## Other distances and the SimBench-style score\n\nMeans over rows [95% interval]. {notes}. "
            "0 is the uniform baseline, 100 a perfect match, below 0 worse than uniform.\n\n"
            f"{markdown_table(table)}\n")


def _noise_floor_section(floor: dict) -> str:
    if not floor.get("available"):
        return ("\n## Human noise floor\n\nNot computed: the test file carries no respondent counts (`n_eff`). "
                "Distributions from `demoscope aggregate` and splits from `demoscope prepare` carry them.\n")
    excess = ", ".join(f"`{s}` {e:+.4f}" for s, e in floor["excess_wd"].items())
    return (f"\n## Human noise floor\n\nEach human distribution is an estimate from `n_eff` respondents "
            f"(median {floor['median_n_eff']:.0f}). The floor is the expected distance between such an estimate and "
            f"the population it estimates ({floor['draws']} multinomial draws per row of the answered `n_eff`): what a "
            f"perfect model would still score. Mean floor: WD {floor['wd']:.4f}, TV {floor['tv']:.4f} "
            f"({floor['rows']} rows); it is the `noise_floor` row and bars above. Excess over the floor (mean WD "
            f"minus the floor's): {excess}. {floor['rows_below_min_n_eff']} row(s) rest on fewer than "
            f"{floor['min_n_eff']:g} effective respondents (`--min-n-eff`): read their groups with care.\n")


def _calibration_section(calibration: dict) -> str:
    if not calibration:
        return ""
    by = "one temperature per subpopulation" if calibration["by"] == "group" else "one temperature for all groups"
    gains = "; ".join(f"{g['difference']}: {g['mean']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]"
                      for g in calibration["gain"])
    return (f"\n## Calibration (temperature scaling, cross-validated by question)\n\nThe `_calibrated` rows rescale "
            f"the answers as q^(1/T), {by}, fitted on {calibration['k']} labelled questions at a time to minimise "
            "mean WD, and scored only on the other questions (each fold of k questions fits once; a row's score is "
            f"the mean over the folds it was held out of). Gain (uncalibrated minus calibrated, paired): {gains}.\n")


def leaderboard_summary(predictions: pd.DataFrame, systems: list[str], config: EvaluateConfig, kind: str,
                        out: Path) -> list[dict]:
    """The leaderboard table (:func:`demoscope.metrics.leaderboard.leaderboard`) and its plots, one per metric."""
    from demoscope.metrics.leaderboard import leaderboard
    from demoscope.reports import plot_bars

    table = leaderboard(predictions, [s for s in systems if s != NOISE_FLOOR], n_boot=config.n_boot,
                        seed=config.seed, by_question=kind == "question")
    for metric, label in (("wd", "mean WD (95% CI)"), ("tv", "mean TV (95% CI)")):
        if metric in table:
            plot_bars(list(table["system"]), table[metric], out / f"leaderboard_{metric}.png", label,
                      errors=[table[metric] - table[f"{metric}_low"], table[f"{metric}_high"] - table[metric]])
    if "simbench" in table:
        plot_bars(list(table["system"]), table["simbench"], out / "leaderboard_simbench.png",
                  "SimBench-style score (higher is better)")
    # The report uses it again, and JSON has no NaN: turn them into None here.
    table = table.astype(object).where(table.notna(), None)
    return table.to_dict(orient="records")


def _leaderboard_section(rows: list[dict] | None) -> str:
    from demoscope.reports import markdown_table

    if not rows:
        return ""

    def cell(row: dict, key: str, fmt: str = ".4f") -> str:
        if row.get(key) is None:
            return ""
        low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
        return f"{row[key]:{fmt}}" + (f" [{low:{fmt}}, {high:{fmt}}]" if low is not None else "")

    table = pd.DataFrame([{"rank": r["rank"], "system": r["system"], "WD": cell(r, "wd"), "TV": cell(r, "tv"),
                           "SimBench": cell(r, "simbench", ".1f"), "WD vs best (paired)": cell(r, "vs_best", "+.4f"),
                           "WD vs uniform (paired)": cell(r, "vs_uniform", "+.4f")} for r in rows])
    return ("\n## Leaderboard\n\nEvery system on the same rows, best mean WD first; each difference pairs the two "
            "systems on the same resampled questions (an interval that excludes 0 separates them). The per-group "
            "table below shows where they differ.\n\n"
            f"{markdown_table(table)}\n\n![WD](leaderboard_wd.png) ![TV](leaderboard_tv.png) "
            "![SimBench](leaderboard_simbench.png)\n")


def order_summary(predictions: pd.DataFrame, systems: list[str], config: EvaluateConfig, kind: str) -> dict:
    """Per system, the mean TV between its answers in the given order and in each other order, with an interval."""
    from demoscope.metrics.bootstrap import bootstrap_ci

    spread = [s for s in systems if f"order_tv_{s}" in predictions]
    if not spread:
        return {}
    clusters = predictions["qkey"].to_numpy() if kind == "question" else None
    rows = []
    for system in spread:
        mean, low, high = bootstrap_ci(predictions[f"order_tv_{system}"], clusters=clusters, n_boot=config.n_boot,
                                       seed=config.seed)
        rows.append({"system": system, "mean_tv_between_orders": mean, "low": low, "high": high})
    return {"orders": config.option_orders, "spread": rows}


def _orders_section(orders: dict) -> str:
    from demoscope.reports import markdown_table

    if not orders:
        return ""
    table = pd.DataFrame([{"system": r["system"], "mean TV between orders": r["mean_tv_between_orders"],
                           "95% interval": f"[{r['low']:.4f}, {r['high']:.4f}]"} for r in orders["spread"]])
    return (f"\n## Option-order robustness ({orders['orders']} orders)\n\nEach item was also asked with its "
            "options reversed and cyclically shifted (letters stay A, B, ...); answers were mapped back to the "
            "options. The spread is the mean total variation between the as-given answer and each other order's "
            "(0: the order does not matter); `<system>_order_avg` rows score the order-averaged answers.\n\n"
            f"{markdown_table(table, floatfmt='.4f')}\n")
