"""Lightning integration (``lightning.pytorch`` and ``pytorch_lightning``): explain validation samples during training
and log how disentangled they are; track layers' effective rank and CKA."""
from lightning_callbacks.lightning_namespace import LightningCallback
from lightning_callbacks.qubo_explanation import QuboExplanationCallback
from lightning_callbacks.representation_analysis import RepresentationAnalysisCallback

__all__ = ["LightningCallback", "QuboExplanationCallback", "RepresentationAnalysisCallback"]
