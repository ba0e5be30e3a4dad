"""The annealing-physics study of METHOD.md §6 on the digits stand-in, plus the speed comparison.

For N_f = 16, 24, 32 digits CNNs, over correctly classified test images: Δ_min of H(s) (paper
driver +(1/d)Σσx, linear schedule), success probability F at τ = 10, 50, 100, success of d² shots,
Landau–Zener estimate. Speed: our adaptive gap + error-controlled evolution vs the authors'
method (dt = 0.01 expm_multiply + eigsh every step) at equal accuracy.

    python benchmarks/annealing_study.py                  # 30 images per model + a shorter speed table
    python benchmarks/annealing_study.py --full --skip-speed   # every correctly classified image (≈17 min)
    python benchmarks/annealing_study.py --speed-only --speed-dims 4 6 8 10 12 14 --ours-only-dims 16 18 20
                                                          # the published speed table (reference d=14 ≈ 5–10 min)
    python benchmarks/annealing_study.py --convention-gaps    # median Δ_min of the N_f=16 instances under each of
                                                          # the authors' three pair conventions (a few minutes)

``--pair-convention`` picks how J enters H_P for the main study (METHOD.md §8; default ``half``, ½ Σ_{p≠q}).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum._utils.gradient import compute_layer_gradients_and_eval  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from captum_qubo.annealing import (  # noqa: E402
    AnnealingHamiltonian,
    evolve,
    landau_zener_success,
    minimum_gap,
    reference_anneal,
)
from captum_qubo.formulation.qubo import PAIR_CONVENTIONS, build_feature_map_qubo  # noqa: E402
from captum_qubo.zoo import load_digits_split, train_digits_cnn  # noqa: E402

PAPER = {
    "median_delta_min": 0.09,
    "F_tau10": "F ≈ 0.9·exp(−0.35 d)",
    "F_tau50": "≈0.6 at d=4 down to ≈0.08 at d=14",
    "F_tau100": "≈0.55–0.85 up to d=11",
    "d_range": "4..14",
}


def layer_inputs(num_filters, max_images, seed=0):
    """α (N, C) and reduce-layer maps (N, C, H, W) of correctly classified test images, classes interleaved."""
    model = train_digits_cnn(num_filters=num_filters, seed=seed)
    _, _, x_test, y_test = load_digits_split(seed)
    with torch.no_grad():
        correct = (model(x_test).argmax(1) == y_test).numpy()
    per_class = [np.flatnonzero(correct & (y_test.numpy() == c)) for c in range(10)]
    rank_in_class = [np.arange(len(ix)) for ix in per_class]
    order = np.concatenate(per_class)[np.argsort(np.concatenate(rank_in_class), kind="stable")]
    chosen = order if max_images is None else order[:max_images]
    grads, maps = compute_layer_gradients_and_eval(model, model.reduce, x_test[chosen], target_ind=y_test[chosen])
    alpha = grads[0].mean(dim=(2, 3)).detach().numpy()
    return alpha, maps[0].detach().numpy(), y_test[chosen].numpy()


def top_d_qubo(alpha, maps, d):
    """QUBO on the d maps with largest α, shifted positive keeping their order (to reach a given d)."""
    chosen = np.argsort(-alpha)[:d]
    importance = np.full_like(alpha, -1.0)
    low, high = alpha[chosen].min(), alpha[chosen].max()
    importance[chosen] = alpha[chosen] - low + 0.05 * (high - low + 1e-12)
    return build_feature_map_qubo(importance, maps)


def study_instance(qubo, taus, seed):
    """Δ_min, F at each τ, d² shots and the Landau–Zener estimate for one QUBO (one core)."""
    rng = np.random.default_rng(seed)
    hamiltonian = AnnealingHamiltonian.from_qubo(qubo, driver="paper")
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        profile = minimum_gap(hamiltonian, "linear", workers=1)
        row = {
            "d": qubo.num_variables,
            "delta_min": profile.delta_min,
            "s_min": profile.s_min,
            "degeneracy": profile.ground_degeneracy,
            "gap_speed": profile.gap_speed,
        }
        d = qubo.num_variables
        for tau in taus:
            result = evolve(hamiltonian, "linear", tau, tolerance=1e-4)
            probabilities = np.abs(result.state) ** 2
            shots = rng.choice(probabilities.size, size=d * d, p=probabilities / probabilities.sum())
            row[f"F_{tau:g}"] = result.success_probability
            row[f"shots_ok_{tau:g}"] = bool(np.isin(shots, result.ground_indices).any())
            row[f"F_LZ_{tau:g}"] = float(landau_zener_success(profile.delta_min, profile.gap_speed, tau))
            row[f"err_{tau:g}"] = result.error_estimate
    row["seconds"] = time.perf_counter() - start
    return row


def _study_task(task):
    qubo, taus, seed, extra = task
    row = study_instance(qubo, taus, seed)
    row.update(extra)
    return row


def run_study(args):
    """Every instance on its own core (``--processes``); shots seeded per instance."""
    tasks = []
    for num_filters in (16, 24, 32):
        alpha, maps, labels = layer_inputs(num_filters, None if args.full else args.max_images, args.seed)
        for a, m, label in zip(alpha, maps, labels):
            qubo = build_feature_map_qubo(a, m, pair_convention=args.pair_convention)
            if 2 <= qubo.num_variables <= args.max_d:
                tasks.append((qubo, args.taus, [args.seed, len(tasks)], {"num_filters": num_filters, "label": int(label)}))
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        for row in pool.imap(_study_task, tasks):
            rows.append(row)
            print(f"[{len(rows)}/{len(tasks)}] N_f={row['num_filters']} class={row['label']} d={row['d']} "
                  f"Δmin={row['delta_min']:.4f} " + " ".join(f"F{t:g}={row[f'F_{t:g}']:.3f}" for t in args.taus), flush=True)
    return rows


def _gap_task(qubo):
    with threadpool_limits(limits=1):
        return minimum_gap(AnnealingHamiltonian.from_qubo(qubo, driver="paper"), "linear", workers=1).delta_min


def convention_gaps(args):
    """Median Δ_min of every correctly classified N_f = 16 test image's QUBO (2 ≤ d ≤ max_d) under each convention."""
    alpha, maps, _ = layer_inputs(16, None, args.seed)
    result = {"num_filters": 16, "paper_median_delta_min": PAPER["median_delta_min"], "conventions": {}}
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        for convention in PAIR_CONVENTIONS:
            qubos = [build_feature_map_qubo(a, m, pair_convention=convention) for a, m in zip(alpha, maps)]
            qubos = [q for q in qubos if 2 <= q.num_variables <= args.max_d]
            gaps = np.array(pool.map(_gap_task, qubos))
            result["conventions"][convention] = {
                "n": len(gaps), "median_delta_min": float(np.median(gaps)),
                "q1": float(np.quantile(gaps, 0.25)), "q3": float(np.quantile(gaps, 0.75)),
            }
            print(convention, result["conventions"][convention], flush=True)
    lines = ["| pair convention | n | median Δ_min [IQR] |", "|---|---|---|"]
    for name, row in result["conventions"].items():
        lines.append(f"| {name} | {row['n']} | {row['median_delta_min']:.3f} [{row['q1']:.3f}, {row['q3']:.3f}] |")
    lines.append(f"| paper (Venturelli et al.) | — | ≈ {PAPER['median_delta_min']} |")
    return result, "\n".join(lines)


def fit_power_law(d, values):
    slope, intercept = np.polyfit(np.log(d), np.log(values), 1)
    return float(np.exp(intercept)), float(slope)


def fit_exponential(d, values):
    slope, intercept = np.polyfit(d, np.log(np.clip(values, 1e-12, None)), 1)
    return float(np.exp(intercept)), float(-slope)


def summarise(rows, taus, out):
    d = np.array([r["d"] for r in rows])
    delta = np.array([r["delta_min"] for r in rows])
    dims = np.unique(d)
    table = []
    for k in dims:
        sel = d == k
        q1, med, q3 = np.percentile(delta[sel], [25, 50, 75])
        entry = {"d": int(k), "n": int(sel.sum()), "delta_median": med, "delta_q1": q1, "delta_q3": q3}
        for tau in taus:
            entry[f"F_{tau:g}"] = float(np.median([r[f"F_{tau:g}"] for r, s in zip(rows, sel) if s]))
            entry[f"shots_{tau:g}"] = float(np.mean([r[f"shots_ok_{tau:g}"] for r, s in zip(rows, sel) if s]))
        table.append(entry)
    medians = np.array([t["delta_median"] for t in table])
    fits = {"delta_power_law": fit_power_law(dims, medians)}
    fits["F10_exponential"] = fit_exponential(d, np.array([r[f"F_{taus[0]:g}"] for r in rows]))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].hist(delta, bins=30, color="tab:blue")
    axes[0].axvline(PAPER["median_delta_min"], color="k", ls="--", label="paper median 0.09")
    axes[0].set(xlabel="Δ_min", ylabel="instances", title="Minimum gap (paper driver, linear)")
    axes[0].legend()
    q1, q3 = np.array([t["delta_q1"] for t in table]), np.array([t["delta_q3"] for t in table])
    axes[1].errorbar(dims, medians, yerr=[medians - q1, q3 - medians], fmt="o", capsize=3, label="median, IQR")
    c, p = fits["delta_power_law"]
    axes[1].plot(dims, c * dims.astype(float) ** p, "r-", label=f"fit {c:.3f}·d^{p:.2f}")
    axes[1].set(xscale="log", yscale="log", xlabel="d", ylabel="Δ_min", title="Δ_min vs d")
    axes[1].legend()
    for tau in taus:
        axes[2].plot(dims, [t[f"F_{tau:g}"] for t in table], "o-", label=f"τ={tau:g} (median)")
    a, b = fits["F10_exponential"]
    axes[2].plot(dims, a * np.exp(-b * dims), "k--", label=f"τ={taus[0]:g} fit {a:.2f}·e^(−{b:.2f}d)")
    axes[2].plot(dims, 0.9 * np.exp(-0.35 * dims), "k:", label="paper τ=10: 0.9·e^(−0.35d)")
    axes[2].set(yscale="log", xlabel="d", ylabel="F", title="Success probability")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "annealing_study.png", dpi=120)
    plt.close(fig)
    return table, fits


def time_it(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def run_speed(args):
    """Reference (dt=0.01, eigsh each step) vs ours (adaptive gap + evolution at the reference's accuracy).

    Ours is timed with one worker (one core, like the reference) and with two (the gap's coarse
    sweep on both cores); the speed-up is quoted for each.
    """
    alpha, maps, _ = layer_inputs(32, 1, args.seed)
    rows = []
    for d in sorted(set(args.speed_dims) | set(args.ours_only_dims)):
        qubo = top_d_qubo(alpha[0], maps[0], d)
        hamiltonian = AnnealingHamiltonian.from_qubo(qubo, driver="paper")
        row = {"d": d, "tau": args.speed_tau}
        if d in args.speed_dims:
            exact = evolve(hamiltonian, "linear", args.speed_tau, tolerance=1e-9)
            reference, row["reference_s"] = time_it(
                lambda: reference_anneal(hamiltonian.problem_energies, "linear", args.speed_tau, driver="paper"))
            row["reference_state_error"] = float(np.linalg.norm(reference.state - exact.state))
            row["reference_F_error"] = abs(reference.success_probability - exact.success_probability)
            row["reference_delta_min"] = reference.delta_min
            tolerance = max(row["reference_state_error"], 1e-9)
        else:
            tolerance = args.ours_tolerance
        ours, row["ours_evolution_s"] = time_it(lambda: evolve(hamiltonian, "linear", args.speed_tau, tolerance=tolerance))
        for workers in (1, 2):
            profile, row[f"ours_gap_s_{workers}w"] = time_it(lambda: minimum_gap(hamiltonian, "linear", workers=workers))
            row[f"ours_s_{workers}w"] = row[f"ours_gap_s_{workers}w"] + row["ours_evolution_s"]
        row.update(tolerance=tolerance, ours_error_estimate=ours.error_estimate, ours_delta_min=profile.delta_min,
                   ours_s_min=profile.s_min, F=ours.success_probability, steps=ours.num_steps,
                   eigensolves=profile.num_eigensolves)
        if d == max(args.ours_only_dims + args.speed_dims):
            _, row["ours_evolution_s_tau100"] = time_it(lambda: evolve(hamiltonian, "linear", 100.0, tolerance=tolerance))
        if "reference_s" in row:
            row["ours_state_error"] = float(np.linalg.norm(ours.state - exact.state))
            for workers in (1, 2):
                row[f"speedup_{workers}w"] = row["reference_s"] / row[f"ours_s_{workers}w"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def speed_markdown(rows):
    lines = ["| d | τ | reference s | ours s, 1 core (gap + evolution) | ours s, 2 cores | speed-up 1 core | speed-up 2 cores "
             "| ref. state error | ours state error | ours Δ_min | ref. Δ_min | solves |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = lambda key, fmt: format(r[key], fmt) if key in r else "—"  # noqa: E731
        lines.append(f"| {r['d']} | {r['tau']:g} | {ref('reference_s', '.1f')} | {r['ours_s_1w']:.2f} "
                     f"({r['ours_gap_s_1w']:.2f} + {r['ours_evolution_s']:.2f}) | {r['ours_s_2w']:.2f} | "
                     f"{ref('speedup_1w', '.0f')} | {ref('speedup_2w', '.0f')} | "
                     f"{ref('reference_state_error', '.1e')} | {ref('ours_state_error', '.1e')} | "
                     f"{r['ours_delta_min']:.4f} | {ref('reference_delta_min', '.4f')} | {r['eigensolves']} |")
    for r in rows:
        if "ours_evolution_s_tau100" in r:
            lines.append(f"\nAt d = {r['d']} the evolution alone takes {r['ours_evolution_s']:.1f} s at τ = {r['tau']:g} "
                         f"and {r['ours_evolution_s_tau100']:.1f} s at τ = 100.")
    return "\n".join(lines)


def study_markdown(table, fits, taus, rows):
    lines = ["| d | n | Δ_min median [IQR] | " + " | ".join(f"F τ={t:g}" for t in taus)
             + " | " + " | ".join(f"d² shots ok τ={t:g}" for t in taus) + " |",
             "|" + "---|" * (3 + 2 * len(taus))]
    for t in table:
        lines.append(f"| {t['d']} | {t['n']} | {t['delta_median']:.3f} [{t['delta_q1']:.3f}, {t['delta_q3']:.3f}] | "
                     + " | ".join(f"{t[f'F_{x:g}']:.3f}" for x in taus) + " | "
                     + " | ".join(f"{t[f'shots_{x:g}']:.2f}" for x in taus) + " |")
    c, p = fits["delta_power_law"]
    a, b = fits["F10_exponential"]
    all_delta = np.median([r["delta_min"] for r in rows])
    lines += ["", f"- Overall median Δ_min = {all_delta:.3f} over {len(rows)} instances (paper: ≈{PAPER['median_delta_min']}).",
              f"- Log-log fit of the median: Δ_min ≈ {c:.3f} · d^{p:.2f}.",
              f"- Exponential fit at τ={taus[0]:g}: F ≈ {a:.2f} · exp(−{b:.2f} d) (paper: {PAPER['F_tau10']})."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-images", type=int, default=30, help="correctly classified images per N_f")
    parser.add_argument("--full", action="store_true", help="every correctly classified test image")
    parser.add_argument("--max-d", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2, help="study instances in parallel, one core each")
    parser.add_argument("--taus", type=float, nargs="+", default=[10.0, 50.0, 100.0])
    parser.add_argument("--speed-dims", type=int, nargs="*", default=[4, 6, 8, 10, 12])
    parser.add_argument("--ours-only-dims", type=int, nargs="*", default=[14, 16, 18, 20])
    parser.add_argument("--speed-tau", type=float, default=10.0)
    parser.add_argument("--ours-tolerance", type=float, default=1e-4)
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pair-convention", choices=PAIR_CONVENTIONS, default="half")
    parser.add_argument("--convention-gaps", action="store_true",
                        help="only the median Δ_min of the N_f=16 instances under each pair convention")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if args.convention_gaps:
        result, table = convention_gaps(args)
        (args.out / "annealing_conventions.json").write_text(json.dumps(result, indent=1))
        (args.out / "annealing_conventions.md").write_text(table + "\n")
        print(table)
        return
    with threadpool_limits(limits=args.blas_threads):
        if not args.speed_only:
            rows = run_study(args)
            table, fits = summarise(rows, args.taus, args.out)
            (args.out / "annealing_study.json").write_text(json.dumps({"rows": rows, "table": table, "fits": fits}, indent=1))
            (args.out / "annealing_study_table.md").write_text(study_markdown(table, fits, args.taus, rows) + "\n")
            print(study_markdown(table, fits, args.taus, rows))
        if not args.skip_speed:
            speed = run_speed(args)
            (args.out / "annealing_speed.json").write_text(json.dumps(speed, indent=1))
            (args.out / "annealing_speed.md").write_text(speed_markdown(speed) + "\n")
            print(speed_markdown(speed))


if __name__ == "__main__":
    main()
