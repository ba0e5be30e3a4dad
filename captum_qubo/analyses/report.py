"""The analysis report: one JSON-serialisable object, written as JSON and as markdown (atomically)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union


def write_atomic(path: Union[str, Path], data: Union[str, bytes]) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path`` (no half-written files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(partial, path)
    return path


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _table(header: List[str], rows: List[List[Any]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


@dataclass
class AnalysisReport:
    """Everything one analysis run measured, ready for ``json.dumps``.

    Attributes:
        model: model name.
        num_inputs: N, the inputs every analysis ran over.
        layers: ``{layer: {"shape", "spectrum", "image_spectra"}}``.
        similarity: ``{"layers", "cka", "gram_cosine", "most_similar"}``.
        mutual_information: ``{label: MI summary}`` (within a layer, or "a ↔ b" between two).
        redundancy: ``{layer: QUBO |cos| vs MI comparison}``.
        integrated_gradients: ``{"input": ..., "layer": ...}`` completeness summaries.
        timings: seconds per step.
        figures: ``{name: file name}`` of the pictures, relative to the report's folder.
    """

    model: str
    num_inputs: int
    layers: Dict[str, dict] = field(default_factory=dict)
    similarity: Dict[str, Any] = field(default_factory=dict)
    mutual_information: Dict[str, dict] = field(default_factory=dict)
    redundancy: Dict[str, dict] = field(default_factory=dict)
    integrated_gradients: Dict[str, dict] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    figures: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict) -> "AnalysisReport":
        return cls(**data)

    def to_markdown(self) -> str:
        lines = [f"# Representation analyses: {self.model}", "", f"{self.num_inputs} inputs.", ""]
        if self.layers:
            lines += ["## Spectra (PCA of the pooled activations; ρ = covariance / trace)", ""]
            rows = []
            for name, layer in self.layers.items():
                s = layer["spectrum"]
                rows.append([name, s["num_features"], s["components"]["90%"], s["components"]["95%"],
                             s["components"]["99%"], s["top5_variance"], s["entropy_nats"], s["effective_rank"],
                             layer.get("image_spectra", {}).get("effective_rank_mean", "")])
            lines += _table(["layer", "maps", "PCs 90%", "PCs 95%", "PCs 99%", "top-5 variance", "S(ρ) nats",
                             "eff. rank exp(S)", "per-image eff. rank"], rows)
        if self.similarity:
            names = self.similarity["layers"]
            for key, title in (("cka", "Linear CKA"), ("gram_cosine", "Gram-matrix cosine (QIXAI's cosine)")):
                lines += [f"## {title}", ""]
                lines += _table(["", *names], [[a, *row] for a, row in zip(names, self.similarity[key])])
            pairs = ", ".join(f"{p['a']} ↔ {p['b']} ({p['similarity']:.3f})" for p in self.similarity["most_similar"])
            lines += [f"Most similar layers (CKA): {pairs}", ""]
        for label, mi in self.mutual_information.items():
            lines += [f"## Mutual information: {label}", "",
                      f"KSG (k={mi['k']}) over {mi['num_pairs']} pairs in {mi['seconds']:.1f} s: mean "
                      f"{mi['mean']:.3f}, median {mi['median']:.3f}, max {mi['max']:.3f} nats.", ""]
            if "null" in mi:
                null = mi["null"]
                lines += [f"Permutation null ({null['num_pairs']} pairs of independently shuffled maps): mean "
                          f"{null['mean']:.3f}, 99.9th percentile {null['q999']:.3f}, max {null['max']:.3f} nats; "
                          f"{null['fraction_above_q999']:.2%} of the real pairs lie above its 99.9th percentile.", ""]
            lines += _table(["map a", "map b", "MI (nats)", "Pearson r", "−½log(1−r²)"],
                            [[p["a"], p["b"], p["mi"], p["pearson"], p["gaussian_mi"]] for p in mi["top_pairs"]])
        for layer, comparison in self.redundancy.items():
            lines += [f"## QUBO redundancy |cos| vs MI: {layer}", ""]
            lines += _table(["quantity", "value"], [[key, value] for key, value in comparison.items()])
        if self.integrated_gradients:
            lines += ["## Integrated Gradients (completeness)", ""]
            lines += _table(["on", "n_steps", "inputs", "max abs δ", "max abs δ / abs(F(x) − F(b))"],
                            [[on, r["n_steps"], r["num_inputs"], r["max_abs_delta"], r["max_relative_delta"]]
                             for on, r in self.integrated_gradients.items()])
        if self.timings:
            lines += ["## Timings", ""] + _table(["step", "seconds"], [[k, v] for k, v in self.timings.items()])
        if self.figures:
            lines += ["## Figures", ""] + [f"![{name}]({path})" for name, path in self.figures.items()] + [""]
        return "\n".join(lines)

    def save(self, out_dir: Union[str, Path], stem: str = "report") -> Dict[str, Path]:
        """Write ``{stem}.json`` and ``{stem}.md`` into ``out_dir``; returns their paths."""
        out = Path(out_dir)
        return {"json": write_atomic(out / f"{stem}.json", self.to_json() + "\n"),
                "markdown": write_atomic(out / f"{stem}.md", self.to_markdown())}
