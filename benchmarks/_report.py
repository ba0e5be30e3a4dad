"""Markdown report, plain win/loss statements and the README "Results" block, all generated from the numbers."""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

REGENERATE_COMMAND = "make benchmark  # = .venv/bin/python -m benchmarks.compare_methods"
TIE_TOLERANCE = 1e-9

# (key, label, higher_is_better)
DIGITS_METRICS = (
    ("bc_mean", "BC mean off-diag", False),
    ("bc_max", "BC max off-diag", False),
    ("average_drop", "Average Drop %", False),
    ("increase_in_confidence", "Increase in Confidence %", True),
)
IMAGENET_METRICS = (
    ("average_drop", "Average Drop %", False),
    ("increase_in_confidence", "Increase in Confidence %", True),
    ("deletion_auc", "Deletion AUC", False),
    ("insertion_auc", "Insertion AUC", True),
    ("pointing_game", "Pointing game", True),
    ("latency_median_s", "Latency s/image (median)", False),
)
# Digits: which disentanglement entry is each method's selection (baselines: top-K by their own weights).
DIGITS_SELECTION = {
    "QUBO": "QUBO",
    "QUBO k-hot": "QUBO k-hot",
    "Grad-CAM": "Grad-CAM top-K",
    "Grad-CAM++": "Grad-CAM++ top-K",
    "Score-CAM": "Score-CAM top-K",
    "Grad-CAM top-K": "Grad-CAM top-K",
    "QUBO paper preset": "QUBO paper preset",
    "Grad-CAM top-K (paper preset's K)": "Grad-CAM top-K (paper preset's K)",
}
OPPONENTS = ("Grad-CAM", "Grad-CAM++", "Score-CAM", "Grad-CAM top-K")
PAPER = "QUBO paper preset"
# The paper preset's opponents: the same baselines, and the top-K ablation at the paper preset's own K.
PAPER_OPPONENTS = ("Grad-CAM", "Grad-CAM++", "Score-CAM", "Grad-CAM top-K (paper preset's K)")


def opponents_of(ours: str) -> Tuple[str, ...]:
    return PAPER_OPPONENTS if ours == PAPER else OPPONENTS


def qubo_configurations(results: dict) -> List[str]:
    """The QUBO configurations a run holds: the library default ("QUBO") and, if run, the paper preset."""
    names = ["QUBO"]
    if PAPER in results.get("digits", {}).get("runs", [{}])[0].get("methods", {}) or PAPER in results.get(
            "imagenet", {}).get("summary", {}):
        names.append(PAPER)
    return names


def options_text(results: dict) -> str:
    """'QUBO = the library default (importance ..., β ...); QUBO paper preset = ...' from the run's record."""
    options = results.get("digits", {}).get("options") or results.get("imagenet", {}).get("config", {}).get("options")
    if not options:
        beta = results.get("digits", {}).get("beta", 0.7)
        return f"QUBO: the paper's formulation (gradient importance, β = {beta}, unconstrained)"
    label = {"QUBO": "QUBO (and QUBO k-hot) = the library default", PAPER: "QUBO paper preset = `preset=\"paper\"`"}
    return "; ".join(f"{label.get(name, name)}: importance `{o['importance']}`, β = {o['beta']}, "
                     f"{o['formulation']}, pair convention `{o['pair_convention']}`" for name, o in options.items())


def fmt(value: Optional[float], digits: int = 3) -> str:
    value = None if value is None else float(value)  # the JSON file stores NaN as the string "nan"
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def compare(ours: float, theirs: float, higher_is_better: bool) -> str:
    """'win', 'loss', 'tie' or 'n/a' for the QUBO's value against an opponent's, direction-aware."""
    ours, theirs = (None if v is None else float(v) for v in (ours, theirs))
    if any(v is None or math.isnan(v) for v in (ours, theirs)):
        return "n/a"
    if abs(ours - theirs) <= TIE_TOLERANCE * max(1.0, abs(theirs)):
        return "tie"
    return "win" if (ours > theirs) == higher_is_better else "loss"


def digits_metric_values(run: dict) -> Dict[str, Dict[str, float]]:
    """{method: {metric key: value}} for one N_f, BC from the method's selection."""
    values = {}
    for method, scores in run["methods"].items():
        selection = run["disentanglement"][DIGITS_SELECTION[method]]
        values[method] = {
            "bc_mean": selection["mean_off_diagonal"],
            "bc_max": selection["max_off_diagonal"],
            "average_drop": scores["average_drop"],
            "increase_in_confidence": scores["increase_in_confidence"],
            "mean_selection_size": scores.get("mean_selection_size"),
            "mean_num_variables": scores.get("mean_num_variables"),
        }
    return values


def digits_tables(digits: dict) -> List[str]:
    lines = []
    header = ["N_f", "Method", "K (mean)"] + [f"{label} {arrow(hib)}" for _, label, hib in DIGITS_METRICS]
    rows = []
    for run in digits["runs"]:
        for method, values in digits_metric_values(run).items():
            size = values["mean_selection_size"]
            label = f"{method} (K={run['k_hot_k']})" if method == "QUBO k-hot" else method
            rows.append([str(run["num_filters"]), label, fmt(size, 2) if size is not None else "top-K"]
                        + [fmt(values[key], 3 if key.startswith("bc") else 1) for key, _, _ in DIGITS_METRICS])
    lines += table(header, rows)
    return lines


def imagenet_table(summary: Dict[str, dict]) -> List[str]:
    header = ["Method", "n photos"] + [f"{label} {arrow(hib)}" for _, label, hib in IMAGENET_METRICS] + ["K (d)"]
    rows = []
    for method, values in summary.items():
        size = values.get("mean_selection_sizes")
        variables = values.get("mean_num_variables")
        selection = f"{fmt(size, 1)} ({fmt(variables, 0)})" if variables is not None else (
            fmt(size, 1) if size is not None else "all")
        cells = []
        for key, _, _ in IMAGENET_METRICS:
            digits = 1 if key in ("average_drop", "increase_in_confidence") else 3
            cell = fmt(values[key], digits)
            if key == "pointing_game" and values["num_pointing"]:
                cell += f" (n={values['num_pointing']})"
            cells.append(cell)
        rows.append([method, str(values["num_images"])] + cells + [selection])
    return table(header, rows)


def digits_verdicts(digits: dict, ours: str = "QUBO") -> List[Tuple[str, str, str, List[Tuple[int, str, float, float]]]]:
    """(metric label, direction, opponent, [(N_f, outcome, ours, theirs)]) for an unconstrained QUBO configuration.

    The paper preset's BC is compared only with Grad-CAM top-K at its own K (the baselines' BC is at the default's K).
    """
    verdicts = []
    per_run = [(run["num_filters"], digits_metric_values(run)) for run in digits["runs"]]
    for key, label, higher in DIGITS_METRICS:
        for opponent in opponents_of(ours):
            if ours == PAPER and key.startswith("bc") and opponent != PAPER_OPPONENTS[-1]:
                continue
            outcomes = [
                (nf, compare(values[ours][key], values[opponent][key], higher), values[ours][key],
                 values[opponent][key])
                for nf, values in per_run if opponent in values and ours in values
            ]
            verdicts.append((label, arrow(higher), opponent, outcomes))
    return verdicts


def imagenet_verdicts(imagenet: dict, ours: str = "QUBO") -> List[Tuple[str, str, str, str, float, float, int]]:
    """(metric label, direction, opponent, outcome, ours, theirs, n) for a QUBO configuration vs each baseline.

    Score-CAM is compared on the subset it ran on (the QUBO's values restricted to the same photos/evaluations).
    """
    verdicts = []
    name = ours
    for key, label, higher in IMAGENET_METRICS:
        for opponent in opponents_of(name):
            source = imagenet["scorecam_subset"] if opponent == "Score-CAM" else imagenet["summary"]
            if name not in source or opponent not in source:
                continue
            ours, theirs = source[name][key], source[opponent][key]
            n = source[opponent]["num_pointing" if key == "pointing_game" else "num_images"]
            verdicts.append((label, arrow(higher), opponent, compare(ours, theirs, higher), ours, theirs, n))
    return verdicts


def _grouped(label: str, direction: str, outcomes: Dict[str, List[str]], ours: str = "QUBO") -> str:
    """'<metric> (↓): QUBO wins against A (...), B (...); loses against C (...); ...' from outcome → details."""
    phrases = [f"{verb} {', '.join(outcomes[key])}" for key, verb in
               (("win", "wins against"), ("loss", "loses against"), ("tie", "ties with"), ("n/a", "not compared with"))
               if outcomes.get(key)]
    return f"- {label} ({direction}): {ours} " + "; ".join(phrases) + "."


def verdict_sentences(results: dict, ours: str = "QUBO") -> List[str]:
    """Plain statements, one per metric, of where an (unconstrained) QUBO configuration wins and where it loses."""
    lines = []
    if "digits" in results:
        for label, direction, opponent_outcomes in _by_metric(digits_verdicts(results["digits"], ours)):
            outcomes: Dict[str, List[str]] = {}
            for opponent, runs in opponent_outcomes:
                for nf, outcome, value, theirs in runs:
                    outcomes.setdefault(outcome, []).append(f"{opponent} at N_f={nf} ({fmt(value)} vs {fmt(theirs)})")
            lines.append(_grouped(f"Digits, {label}", direction, outcomes, ours))
    if "imagenet" in results:
        verdicts = imagenet_verdicts(results["imagenet"], ours)
        for label, direction, opponent_outcomes in _by_metric([(v[0], v[1], v[2], v[3:]) for v in verdicts]):
            outcomes = {}
            for opponent, (outcome, value, theirs, n) in opponent_outcomes:
                outcomes.setdefault(outcome, []).append(f"{opponent} ({fmt(value)} vs {fmt(theirs)}, n={n})")
            lines.append(_grouped(f"ImageNet, {label}", direction, outcomes, ours))
    return lines


def _by_metric(verdicts):
    """[(label, direction, [(opponent, details), ...])] grouping verdict tuples by metric, order kept."""
    grouped: Dict[Tuple[str, str], list] = {}
    for label, direction, opponent, details in verdicts:
        grouped.setdefault((label, direction), []).append((opponent, details))
    return [(label, direction, items) for (label, direction), items in grouped.items()]


def compact_verdicts(results: dict, ours: str = "QUBO") -> List[str]:
    """One short line per metric: which opponents a QUBO configuration beats / loses to, at how many N_f (digits)."""
    lines = []
    if "digits" in results:
        for label, direction, opponent_outcomes in _by_metric(digits_verdicts(results["digits"], ours)):
            outcomes: Dict[str, List[str]] = {}
            for opponent, runs in opponent_outcomes:
                for outcome in ("win", "loss", "tie"):
                    count = sum(o == outcome for _, o, _, _ in runs)
                    if count:
                        outcomes.setdefault(outcome, []).append(f"{opponent} ({count}/{len(runs)} N_f)")
            lines.append(_grouped(f"Digits, {label}", direction, outcomes, ours))
    if "imagenet" in results:
        verdicts = imagenet_verdicts(results["imagenet"], ours)
        for label, direction, opponent_outcomes in _by_metric([(v[0], v[1], v[2], v[3]) for v in verdicts]):
            outcomes = {}
            for opponent, outcome in opponent_outcomes:
                outcomes.setdefault(outcome, []).append(opponent)
            lines.append(_grouped(f"ImageNet, {label}", direction, outcomes, ours))
    return lines


def win_loss_counts(results: dict, ours: str = "QUBO") -> str:
    outcomes = []
    if "digits" in results:
        outcomes += [o for *_, runs in digits_verdicts(results["digits"], ours) for _, o, _, _ in runs]
    if "imagenet" in results:
        outcomes += [v[3] for v in imagenet_verdicts(results["imagenet"], ours)]
    twice = ("(on digits' BC, Grad-CAM and Grad-CAM top-K are the same selection, so those count twice)"
             if ours != PAPER else "(its BC is compared with Grad-CAM top-K at its own K only)")
    return (f"{ours} (unconstrained) against the baselines and the top-K ablation, over all metric comparisons: "
            f"{outcomes.count('win')} wins, {outcomes.count('loss')} losses, {outcomes.count('tie')} ties {twice}.")


def markdown_report(results: dict) -> str:
    meta = results["meta"]
    lines = ["# QUBO feature-map selection vs CAM baselines", "",
             f"Generated by `{meta['command']}` on {meta['finished_utc']} in {meta['wall_seconds']:.0f} s "
             f"({', '.join(f'{part} {seconds:.0f} s' for part, seconds in results.get('part_seconds', {}).items())}; "
             f"seed {meta['seed']}, {meta['num_threads']} torch threads, {meta['machine']}). "
             "Latencies are wall-clock on that machine, shared with other jobs: compare them within this run only.",
             "", "↓ lower is better, ↑ higher is better.", ""]
    if "digits" in results:
        digits = results["digits"]
        lines += ["## 1. Digits: the paper's disentanglement experiment", "",
                  f"sklearn digits, CNN with the paper's shape (reduce block of N_f maps → linear head), "
                  f"{digits['per_class']} correctly classified test images per class. {options_text(results)}; "
                  f"solved exactly (sampler `{digits['sampler']}`; the default dense tabu search where an image has more than 24 "
                  "variables, listed per N_f below). QUBO k-hot: K = median unconstrained selection "
                  "size over the images (images with fewer positive-α maps than K keep all of them). BC columns: the "
                  "QUBO's own selection; for Grad-CAM / Grad-CAM++ / Score-CAM their top-K maps by their own channel "
                  "weights with K = the unconstrained QUBO's size on the same image (METHOD.md §4). Faithfulness "
                  "columns: each method's own map (8×8, ReLU, min-max). Grad-CAM top-K is an ablation: the QUBO's "
                  "map formula on the K largest-α maps (no redundancy term).", ""]
        lines += digits_tables(digits)
        lines += [""] + [f"- N_f={run['num_filters']}: test accuracy {run['test_accuracy']:.3f}, "
                         + (f"solved by {', '.join(f'{m}: `{v}`' for m, v in run['samplers'].items())}, "
                            if "samplers" in run else "") +
                         f"mean QUBO variables d = {sum(run['qubo_num_variables']) / len(run['qubo_num_variables']):.1f}, "
                         f"k-hot K = {run['k_hot_k']} ({run['k_hot_images_capped']} images capped at d), "
                         f"figure `{run['figure']}`" for run in digits["runs"]] + [""]
    if "imagenet" in results:
        imagenet = results["imagenet"]
        config = imagenet["config"]
        lines += ["## 2. ImageNet: EfficientNet-Lite0 on bundled photos", "",
                  f"Layer {config['layer']}. QUBO: sampler `sa` {config['sampler_kwargs']}, seed {config['seed']}. "
                  f"Deletion (zeros baseline) and insertion (blur baseline) with {config['deletion_steps']} steps. "
                  f"Pointing game: {imagenet['composites']['num_composites']} 2×2 composites of "
                  f"{imagenet['composites']['tile_size']}² tiles, every cell explained. Latency: one call per photo. "
                  f"Score-CAM needs one forward pass per map (1280 per explanation): it ran on the first "
                  f"{config['scorecam_images']} photo(s) and {config['scorecam_pointing']} pointing evaluation(s) "
                  "only; see the matched-subset table.", ""]
        lines += table(["Photo", "Source", "Top-1 (explained)", "p"],
                       [[p["name"], p["source"], p["predicted"], fmt(p["confidence"], 3)] for p in imagenet["photos"]])
        qubo = imagenet["summary"]["QUBO"]
        lines += ["", "All methods, all photos (Score-CAM: its subset):", ""] + imagenet_table(imagenet["summary"])
        lines += ["", f"QUBO: median sampler time {fmt(qubo.get('solve_median_s'))} s of its "
                      f"{fmt(qubo['latency_median_s'])} s per photo; d = maps with α > 0 (the QUBO's variables), "
                      "K = maps selected."]
        lines += ["", "Matched subset (the photos/evaluations Score-CAM ran on):", ""]
        lines += imagenet_table(imagenet["scorecam_subset"]) + [""]
    lines += ["## Where the QUBO method wins and where it loses", "", options_text(results) + ".", ""]
    for ours in qubo_configurations(results):
        lines += [f"### {ours}", "", win_loss_counts(results, ours), ""]
        lines += compact_verdicts(results, ours) + ["", f"With the numbers ({ours}'s value first):", ""]
        lines += verdict_sentences(results, ours) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def readme_results_block(results: dict) -> str:
    """The README "Results" section: headline tables, the verdict count and the regenerating command."""
    lines = ["## Results", "",
             f"Measured by `benchmarks/compare_methods.py` ({results['meta']['finished_utc']}, "
             f"{results['meta']['machine']}, seed {results['meta']['seed']}); regenerate with:", "", "```bash",
             REGENERATE_COMMAND, "```", "", "Full report: `benchmarks/results/compare_methods.md` (+ `.json`, figures).",
             "↓ lower is better, ↑ higher is better.", ""]
    if "digits" in results:
        header = ["N_f", "Method", "BC mean off-diag ↓", "Average Drop % ↓", "Increase in Confidence % ↑"]
        rows = []
        for run in results["digits"]["runs"]:
            for method, values in digits_metric_values(run).items():
                rows.append([str(run["num_filters"]), method, fmt(values["bc_mean"]), fmt(values["average_drop"], 1),
                             fmt(values["increase_in_confidence"], 1)])
        lines += ["Digits (the paper's experiment; baselines' BC from their top-K maps, K = the QUBO's size):", ""]
        lines += table(header, rows) + [""]
    if "imagenet" in results:
        lines += ["EfficientNet-Lite0 on bundled photos (Score-CAM on its affordable subset):", ""]
        lines += imagenet_table(results["imagenet"]["summary"]) + [""]
    lines += [options_text(results) + ".", ""]
    for ours in qubo_configurations(results):
        lines += [f"Where {ours} (unconstrained) wins and loses, per metric:", ""] + compact_verdicts(results, ours)
        lines += ["", win_loss_counts(results, ours), ""]
    return "\n".join(lines)
