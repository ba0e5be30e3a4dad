"""The LightningModule a dataset run hands to ``Trainer.predict``: ``predict_step`` explains its batch.

:class:`DatasetExplainMixin` holds the logic and works in any LightningModule; :class:`DatasetExplainer` is it
under ``lightning.pytorch`` (what Lightning's docs teach), :class:`DatasetExplainerPL` under ``pytorch_lightning``
when that package is installed. :func:`explainer_module` picks the one matching a Trainer's namespace. The classes
live at module level so ``strategy="ddp_spawn"`` can pickle them.
"""
from __future__ import annotations

from typing import Any, Dict, List

from torch.nn import Module

from captum_qubo.integrations.dataset.methods import BatchExplainer, ExplainSettings
from lightning_callbacks.lightning_namespace import installed_namespaces, load_namespace


class DatasetExplainMixin:
    """``predict_step`` for batches of :mod:`.sources` items: returns ``{"columns": ..., "maps": ...}``.

    Unreadable samples (non-empty ``error``) are not explained; they keep their row with the error and empty
    explanation fields, so the writer records them and a rerun does not retry them.

    Args:
        model: the classifier to explain (a submodule, so Lightning moves it to the device).
        settings: what to compute per sample.
    """

    def __init__(self, model: Module, settings: ExplainSettings) -> None:
        super().__init__()
        self.model = model
        self.settings = settings
        self._batch_explainer = None

    def forward(self, images):
        return self.model(images)

    def predict_step(self, batch: Dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Dict[str, Any]:
        if self._batch_explainer is None:  # built in the worker, on the model already on its device
            self._batch_explainer = BatchExplainer(self.model, self.settings)
        errors: List[str] = list(batch["error"])
        readable = [i for i, error in enumerate(errors) if not error]
        columns: Dict[str, List[Any]] = {
            "sample_id": list(batch["sample_id"]),
            "source": list(batch["source"]),
            "label": batch["label"].tolist(),
            "error": [error or None for error in errors],
            "map_row": [None] * len(errors),
        }
        maps: Dict[str, Any] = {}
        if readable:
            explained, maps = self._batch_explainer.explain(batch["image"][readable], batch["label"][readable])
            for row, index in enumerate(readable):
                columns["map_row"][index] = row
            for key, values in explained.items():
                full = [None] * len(errors)
                for index, value in zip(readable, values):
                    full[index] = value
                columns[key] = full
        return {"columns": columns, "maps": maps}


_CLASS_NAMES = {"lightning.pytorch": "DatasetExplainer", "pytorch_lightning": "DatasetExplainerPL"}
for _namespace in installed_namespaces():
    _name = _CLASS_NAMES[_namespace.name]
    globals()[_name] = type(_name, (DatasetExplainMixin, _namespace.LightningModule),
                            {"__module__": __name__, "__qualname__": _name,
                             "__doc__": f"{DatasetExplainMixin.__name__} as a {_namespace.name}.LightningModule."})


def explainer_module(model: Module, settings: ExplainSettings, lightning: str = "lightning.pytorch") -> Any:
    """The LightningModule explaining ``model`` for a Trainer of namespace ``lightning``.

    Args:
        model: the classifier.
        settings: what to compute.
        lightning: ``"lightning.pytorch"`` or ``"pytorch_lightning"``.

    Returns:
        A :class:`DatasetExplainer` (or :class:`DatasetExplainerPL`).
    """
    load_namespace(lightning)  # a clear ImportError / ValueError for a missing or unknown namespace
    return globals()[_CLASS_NAMES[lightning]](model, settings)
