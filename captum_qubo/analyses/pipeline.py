"""All analyses on one model and one input set, timed, with their pictures and an :class:`AnalysisReport`."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.nn import Module

from captum_qubo.analyses import figures
from captum_qubo.analyses.activations import collect_activations, pool_maps
from captum_qubo.analyses.path_attribution import integrated_gradients
from captum_qubo.analyses.map_information import mutual_information
from captum_qubo.analyses.redundancy import compare_redundancy, mean_abs_cosine
from captum_qubo.analyses.report import AnalysisReport
from captum_qubo.analyses.similarity import most_similar_pairs, similarity_matrix
from captum_qubo.analyses.spectrum import activation_spectrum, image_spectra


def _resident_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextmanager
def measured(step: str, timings: Dict[str, float], peaks: Dict[str, float]) -> Iterator[None]:
    """Record the step's wall time, and on Linux its peak resident memory above the start (MiB)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:  # resets the peak (VmHWM) to the current RSS
            refs.write("5")
        start_kib = _resident_kib("VmRSS")
    except OSError:
        start_kib = None
    start = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - start
    peak = _resident_kib("VmHWM")
    if start_kib is not None and peak is not None:
        peaks[step] = max(0.0, (peak - start_kib) / 1024.0)


def run_analyses(
    model: Module,
    layers: Sequence[str],
    inputs: Tensor,
    model_name: str,
    out_dir: Optional[Union[str, Path]] = None,
    pictures: Optional[np.ndarray] = None,
    mi_layers: Optional[Sequence[str]] = None,
    mi_between: Optional[Sequence[Tuple[str, str]]] = None,
    ig_inputs: int = 4,
    ig_layer: Optional[str] = None,
    ig_steps: int = 64,
    null_columns: int = 300,
    null_groups: Optional[Sequence] = None,
    batch_size: int = 32,
    k: int = 3,
    seed: int = 0,
    memory_mb: float = 256.0,
    progress: bool = False,
) -> Tuple[AnalysisReport, Dict[str, object]]:
    """Spectra, layer similarity, MI (with the QUBO-redundancy comparison) and IG for ``layers``.

    Args:
        model: the classifier (outputs (N, classes) logits).
        layers: dotted names of the layers to analyse.
        inputs: (N, ...) inputs every analysis runs over.
        model_name: name used in the report.
        out_dir: where the pictures and ``report.{json,md}`` go; None: nothing is written.
        pictures: the inputs as pictures (see :func:`captum_qubo.analyses.inputs.display_images`), for IG.
        mi_layers: layers whose maps get all-pairs MI (default: the last layer).
        mi_between: layer pairs with between-layer MI (default: the last two layers).
        ig_inputs: how many inputs IG explains (0: skip IG).
        ig_layer: the layer of layer IG (default: the last layer).
        ig_steps: IG's integration steps (each costs one forward and backward pass per explained input).
        null_columns: maps in the permutation null of each within-layer MI (0: no null).
        null_groups: (N,) labels of inputs that belong together (crops of one photo): the null moves whole groups.
        batch_size, k, seed, memory_mb, progress: passed to the analyses.

    Returns:
        (the report, the raw results: ``{"activations", "spectra", "mutual_information", "qubo_j", "ig"}``).
    """
    layers = list(layers)
    mi_layers = [layers[-1]] if mi_layers is None else list(mi_layers)
    mi_between = [tuple(layers[-2:])] if mi_between is None and len(layers) > 1 else list(mi_between or [])
    ig_layer = ig_layer or layers[-1]
    report = AnalysisReport(model=model_name, num_inputs=int(inputs.shape[0]))
    peaks: Dict[str, float] = {}
    raw: Dict[str, object] = {}
    with measured("activations", report.timings, peaks):
        maps = collect_activations(model, layers, inputs, batch_size=batch_size, pooled=False, progress=progress)
        pooled = {name: pool_maps(value) for name, value in maps.items()}
    raw["activations"] = pooled
    with measured("spectra", report.timings, peaks):
        spectra = {name: activation_spectrum(value) for name, value in pooled.items()}
        for name, spectrum in spectra.items():
            entry = {"shape": list(maps[name].shape[1:]), "spectrum": spectrum.to_dict()}
            if maps[name].ndim == 4:
                entry["image_spectra"] = image_spectra(maps[name]).to_dict()
            report.layers[name] = entry
    raw["spectra"] = spectra
    with measured("similarity", report.timings, peaks):
        names, cka = similarity_matrix(pooled, "cka")
        _, cosine = similarity_matrix(pooled, "gram_cosine")
    report.similarity = {"layers": names, "cka": cka.tolist(), "gram_cosine": cosine.tolist(),
                         "most_similar": most_similar_pairs(names, cka, 3),
                         "most_similar_gram_cosine": most_similar_pairs(names, cosine, 3)}
    raw["mutual_information"], raw["qubo_j"] = {}, {}
    for name in mi_layers:
        with measured(f"mutual_information {name}", report.timings, peaks):
            result = mutual_information(pooled[name], k=k, seed=seed, memory_mb=memory_mb, progress=progress,
                                        null_columns=null_columns, null_groups=null_groups)
        raw["mutual_information"][name] = result
        report.mutual_information[name] = result.summary()
        if maps[name].ndim == 4:
            with measured(f"qubo_redundancy {name}", report.timings, peaks):
                qubo_j = mean_abs_cosine(maps[name])
                report.redundancy[name] = compare_redundancy(qubo_j, result.matrix, result.pearson)
            raw["qubo_j"][name] = qubo_j
    for a, b in mi_between:
        label = f"{a} ↔ {b}"
        with measured(f"mutual_information {label}", report.timings, peaks):
            result = mutual_information(pooled[a], pooled[b], k=k, seed=seed, memory_mb=memory_mb, progress=progress)
        raw["mutual_information"][label] = result
        report.mutual_information[label] = result.summary()
    del maps
    if ig_inputs:
        shown = inputs[:ig_inputs]
        with torch.no_grad():
            targets = model(shown).argmax(dim=1)
        with measured("integrated_gradients", report.timings, peaks):
            on_inputs = integrated_gradients(model, shown, targets, n_steps=ig_steps, internal_batch_size=batch_size)
            on_layer = integrated_gradients(model, shown, targets, layer=ig_layer, n_steps=ig_steps,
                                            internal_batch_size=batch_size)
        report.integrated_gradients = {"input": on_inputs.to_dict(), f"layer {ig_layer}": on_layer.to_dict()}
        raw["ig"] = {"input": on_inputs, "layer": on_layer, "targets": targets}
    report.timings = {step: round(seconds, 3) for step, seconds in report.timings.items()}
    raw["peak_memory_mib"] = {step: round(mib, 1) for step, mib in peaks.items()}
    if out_dir is not None:
        draw_figures(report, raw, Path(out_dir), pictures)
        report.save(out_dir)
    return report, raw


def _file_name(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label.replace(" ↔ ", "__vs__"))


def draw_figures(report: AnalysisReport, raw: Dict[str, object], out: Path, pictures: Optional[np.ndarray]) -> None:
    """Write every picture into ``out`` and list it in ``report.figures``."""
    def save(name: str, figure) -> None:
        figures.save_figure(figure, out / f"{name}.png")
        report.figures[name] = f"{name}.png"

    save("spectra", figures.spectrum_figure(raw["spectra"], f"{report.model}: spectra of pooled activations"))
    similarity = report.similarity
    save("similarity", figures.similarity_figure(
        similarity["layers"], {"linear CKA": np.array(similarity["cka"]),
                               "Gram-matrix cosine (QIXAI)": np.array(similarity["gram_cosine"])}))
    for label, result in raw["mutual_information"].items():
        pair = label.split(" ↔ ")
        save(f"mi_{_file_name(label)}", figures.mutual_information_figure(
            result, f"KSG MI: {label}", labels=[f"{pair[0]} map", f"{pair[-1]} map"]))
    for name, qubo_j in raw["qubo_j"].items():
        save(f"redundancy_{_file_name(name)}", figures.redundancy_figure(
            qubo_j, raw["mutual_information"][name].matrix, f"{name}: QUBO |cos| vs MI"))
    if "ig" in raw and pictures is not None:
        ig = raw["ig"]
        captions: List[str] = [f"target {int(t)}" for t in ig["targets"]]
        save("integrated_gradients", figures.integrated_gradients_figure(
            pictures[: len(captions)], ig["input"].attributions.numpy(), captions))
