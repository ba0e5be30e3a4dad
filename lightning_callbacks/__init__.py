"""PyTorch Lightning integration: explain validation samples during training and log how disentangled they are."""
from lightning_callbacks.qubo_explanation import QuboExplanationCallback

__all__ = ["QuboExplanationCallback"]
