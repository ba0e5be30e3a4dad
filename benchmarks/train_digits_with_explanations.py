"""Train the digits CNN with QuboExplanationCallback, CSV and TensorBoard loggers; print the per-epoch table.

    .venv/bin/python benchmarks/train_digits_with_explanations.py --epochs 5 --num-samples 64

Logs go to out/lightning_digits/ (``tensorboard --logdir out/lightning_digits`` shows the scalars, the
overlay grid and the BC matrices); the table is also written to
benchmarks/results/digits_explanations_per_epoch.csv. The table is read back from the CSV logger's
metrics.csv, i.e. from what Lightning actually logged.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_callbacks import QuboExplanationCallback
from lightning_callbacks.digits_example import DIGITS_LAYER, DigitsClassifier, DigitsDataModule

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = [("val_acc", "val acc"), ("qubo/bc_mean_off_diagonal", "QUBO BC mean"),
           ("gradcam_topk/bc_mean_off_diagonal", "top-K BC mean"), ("qubo/bc_max_off_diagonal", "QUBO BC max"),
           ("gradcam_topk/bc_max_off_diagonal", "top-K BC max"), ("qubo/average_drop", "QUBO AD %"),
           ("gradcam_topk/average_drop", "top-K AD %"), ("qubo/increase_in_confidence", "QUBO IC %"),
           ("gradcam_topk/increase_in_confidence", "top-K IC %"), ("qubo/mean_selected_maps", "maps"),
           ("qubo/mean_solve_seconds", "solve s")]


def per_epoch_table(metrics_csv: Path, prefix: str = "explain/") -> list:
    """One row per epoch with the explanation metrics and validation accuracy, merged from metrics.csv."""
    rows = {}
    with open(metrics_csv, newline="") as handle:
        for record in csv.DictReader(handle):
            row = rows.setdefault(int(record["epoch"]), {"epoch": int(record["epoch"])})
            for key, _ in COLUMNS:
                value = record.get(key if key == "val_acc" else prefix + key)
                if value:
                    row[key] = float(value)
    return [rows[epoch] for epoch in sorted(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--sampler", default="sa", help="sampler name, e.g. sa, exact, tabu, mock-qpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default="out/lightning_digits")
    args = parser.parse_args()

    pl.seed_everything(args.seed, verbose=False)
    explainer = QuboExplanationCallback(DIGITS_LAYER, num_samples=args.num_samples, sampler=args.sampler,
                                        seed=args.seed)
    loggers = [CSVLogger(args.log_dir, name="csv"), TensorBoardLogger(args.log_dir, name="tensorboard")]
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[explainer], logger=loggers, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=10)
    trainer.fit(DigitsClassifier(), DigitsDataModule(seed=args.seed))

    table = per_epoch_table(Path(loggers[0].log_dir) / "metrics.csv")
    header = ["epoch"] + [label for _, label in COLUMNS]
    print(" | ".join(f"{h:>13}" for h in header))
    for row in table:
        print(" | ".join([f"{row['epoch']:>13d}"] + [f"{row.get(key, float('nan')):>13.4g}" for key, _ in COLUMNS]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "digits_explanations_per_epoch.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch"] + [key for key, _ in COLUMNS])
        writer.writeheader()
        writer.writerows(table)
    print(f"\nsampler={args.sampler}, {args.num_samples} samples, torch {torch.__version__}; "
          f"logs in {args.log_dir} (CSV: {loggers[0].log_dir}, TensorBoard: {loggers[1].log_dir})")


if __name__ == "__main__":
    main()
