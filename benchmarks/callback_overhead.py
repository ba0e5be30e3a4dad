"""Epoch time of digits-CNN training with and without QuboExplanationCallback (64 explained samples).

    .venv/bin/python benchmarks/callback_overhead.py --epochs 6 --repeats 2

An epoch is timed from ``on_train_epoch_start`` to ``on_train_epoch_end``, which in Lightning 2.x
includes the validation run and so the callback's work. The first epoch of each run is dropped
(warm-up), the median of the rest is reported; configurations are interleaved across repeats so a
busy machine slows them alike. A second measurement compares explained and plain epochs of one run (the default
callback explaining every other epoch), which a shared machine's slow and fast phases can hardly bias. The last
columns estimate the same ratio from the hook's own time, which varies far less than whole epochs do (the rest of an
explained epoch is Lightning's epoch-end handling of the logged values, under a millisecond): 1 + (median time in
the explainer's hook) ÷ (median epoch without the callback), and, from the same epochs only, the median over epochs of
epoch ÷ (epoch − hook) — the callback leaves training bit-identical and works only in its hook (and in Lightning's
epoch-end handling of what it logged, under a millisecond, so this ratio is very slightly low), so an epoch less its
hook is about that epoch without the callback, in the same phase of the machine.
Writes benchmarks/results/callback_overhead.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_callbacks import QuboExplanationCallback
from lightning_callbacks.digits_example import DIGITS_LAYER, DigitsClassifier, DigitsDataModule

RESULTS = Path(__file__).resolve().parent / "results"
ALTERNATING = "dense-tabu (default), no pictures"
CONFIGS = {
    "no callback": None,
    "dense-tabu (default), no pictures": dict(images_every_n_epochs=0),
    "dense-tabu (default), no baseline, no pictures": dict(baseline=False, images_every_n_epochs=0),
    "exact, no pictures": dict(sampler="exact", images_every_n_epochs=0),
    "sa, no pictures": dict(sampler="sa", images_every_n_epochs=0),
    "sa, no baseline, no pictures": dict(sampler="sa", baseline=False, images_every_n_epochs=0),
    "sa, pictures to TensorBoard": dict(sampler="sa", images_every_n_epochs=1),
}


class EpochTimer(Callback):
    """Whole epochs (training + validation); placed around the explainer, also the time its hook takes."""

    def __init__(self):
        self.seconds, self.hook_seconds = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._start)


class HookStart(Callback):
    def __init__(self, timer):
        self.timer = timer

    def on_validation_epoch_end(self, trainer, pl_module):
        self.timer._hook_start = time.perf_counter()


class HookEnd(HookStart):
    def on_validation_epoch_end(self, trainer, pl_module):
        self.timer.hook_seconds.append(time.perf_counter() - self.timer._hook_start)


def epoch_seconds(options, epochs: int, num_samples: int, log_dir: str, every_n_epochs: int = 1) -> tuple:
    """(epoch seconds, seconds in the explainer's hook) of every epoch after the first."""
    pl.seed_everything(0, verbose=False)
    timer = EpochTimer()
    callbacks = [timer, HookStart(timer), HookEnd(timer)]
    if options is not None:
        callbacks.insert(2, QuboExplanationCallback(DIGITS_LAYER, num_samples=num_samples,
                                                    every_n_epochs=every_n_epochs, **options))
    logger = TensorBoardLogger(log_dir) if options and options.get("images_every_n_epochs") else False
    pl.Trainer(max_epochs=epochs, callbacks=callbacks, logger=logger, enable_progress_bar=False,
               enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0).fit(
        DigitsClassifier(), DigitsDataModule())
    return timer.seconds[1:], timer.hook_seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-dir", default="out/callback_overhead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    samples = {name: [] for name in CONFIGS}
    hooks = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, options in CONFIGS.items():
            epochs, hook = epoch_seconds(options, args.epochs, args.num_samples, args.log_dir)
            samples[name] += epochs
            hooks[name] += hook
    # The same comparison inside one run: the default callback explains every other epoch, so explained and plain
    # epochs alternate in one process and a machine's slow and fast phases hit both alike.
    explained, plain = [], []
    for _ in range(args.repeats):
        epochs, _ = epoch_seconds(CONFIGS[ALTERNATING], 2 * args.epochs + 1, args.num_samples, args.log_dir, 2)
        # epoch_seconds drops epoch 0; epochs 1, 3, 5 ... explain ((epoch + 1) % 2 == 0), 2, 4 ... do not.
        explained += epochs[0::2]
        plain += epochs[1::2]
    alternating = {"configuration": f"{ALTERNATING}, every other epoch (one run)",
                   "median_explained_epoch_seconds": statistics.median(explained),
                   "median_plain_epoch_seconds": statistics.median(plain),
                   "ratio": statistics.median(explained) / statistics.median(plain),
                   "explained_epochs": len(explained), "plain_epochs": len(plain)}
    for name in CONFIGS:  # one hook time per timed epoch, so the same-epoch ratio pairs them
        assert len(samples[name]) == len(hooks[name]), (name, len(samples[name]), len(hooks[name]))
    baseline = statistics.median(samples["no callback"])
    rows = [{"configuration": name, "median_epoch_seconds": statistics.median(times),
             "ratio_to_no_callback": statistics.median(times) / baseline,
             "median_explainer_hook_seconds": statistics.median(hooks[name]),
             "hook_share_of_plain_epoch": statistics.median(hooks[name]) / baseline,
             "same_epoch_ratio": statistics.median(t / (t - h) for t, h in zip(times, hooks[name])),
             "epochs_timed": len(times)}
            for name, times in samples.items()]

    header = ("| configuration | median epoch s | ratio | explainer hook s | 1 + hook ÷ plain epoch | "
              "epoch ÷ (epoch − hook), same epochs |\n|---|---:|---:|---:|---:|---:|")
    lines = [f"| {r['configuration']} | {r['median_epoch_seconds']:.3f} | {r['ratio_to_no_callback']:.2f} | "
             f"{r['median_explainer_hook_seconds']:.3f} | {1 + r['hook_share_of_plain_epoch']:.3f} | "
             f"{r['same_epoch_ratio']:.3f} |" for r in rows]
    setting = (f"digits CNN (N_f=16), 1257 train / 540 validation images, batch 64, {args.num_samples} explained "
               f"samples, {args.threads} torch thread(s), {platform.processor() or platform.machine()}, "
               f"torch {torch.__version__}, lightning {pl.__version__}")
    table = "\n".join([header] + lines) + (
        "\n\nWithin one run, explaining every other epoch (explained epochs ÷ plain epochs of the same run):\n\n"
        "| configuration | median explained epoch s | median plain epoch s | ratio |\n|---|---:|---:|---:|\n"
        f"| {alternating['configuration']} | {alternating['median_explained_epoch_seconds']:.3f} | "
        f"{alternating['median_plain_epoch_seconds']:.3f} | {alternating['ratio']:.2f} |")
    print(table + "\n\n" + setting)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "callback_overhead.md").write_text(f"# QuboExplanationCallback overhead\n\n{setting}\n\n{table}\n")
    (RESULTS / "callback_overhead.json").write_text(json.dumps(
        {"setting": setting, "rows": rows, "epoch_seconds": samples, "explainer_hook_seconds": hooks,
         "alternating": alternating, "alternating_epoch_seconds": {"explained": explained, "plain": plain}}, indent=2))


if __name__ == "__main__":
    main()
