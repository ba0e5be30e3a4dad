"""Lightning integration (``lightning.pytorch`` and ``pytorch_lightning``): explain validation samples during training
and log how disentangled they are."""
from lightning_callbacks.lightning_namespace import LightningCallback
from lightning_callbacks.qubo_explanation import QuboExplanationCallback

__all__ = ["LightningCallback", "QuboExplanationCallback"]
