"""Which per-map importance the QUBO rewards (its linear term h and its pre-filter).

- ``"gradient"`` — the paper's α_k = (1/HW) Σ_ij ∂z_c/∂f_k,ij (the Grad-CAM weight). At a layer followed by
  global pooling or flattening and a linear head, α_k depends on the class only, not on the image.
- ``"contribution"`` — α_k · Σ_ij f_k,ij, map k's first-order share of the logit. For a head that is linear in
  the layer's spatial mean (global average pooling then a linear layer), z_c = Σ_k w_ck·mean(f_k) + b_c and
  α_k = w_ck/HW, so the contribution is exactly w_ck·mean(f_k): map k's term in the logit. Elsewhere it is a
  first-order estimate. It is image-specific, and a nearly inactive map gets ~0 reward.
- ``"gradient_x_activation"`` — Σ_ij (∂z_c/∂f_k,ij)·f_k,ij. Equal to ``"contribution"`` when the gradient is
  constant over positions (pooled-linear heads); exactly map k's term in the logit for *any* head that is linear
  in the layer (e.g. the paper's flatten-then-linear head, where ``"contribution"`` is only an approximation).
- ``"contrastive"`` — ``"contribution"`` computed on the margin z_c − z_r instead of z_c, where r is the
  highest-scoring class other than the target in the same forward pass (per sample):
  ᾱ_k · Σ_ij f_k,ij with ᾱ_k = (1/HW) Σ_ij ∂(z_c − z_r)/∂f_k,ij. For a pooled-linear head it is exactly
  (w_ck − w_rk)·mean(f_k): map k's share of the margin. Why: class disentanglement (BC, METHOD.md §4) asks that
  classes rely on *different* maps. ``"gradient"`` and ``"contribution"`` reward a map for supporting c even when it
  supports the rival r just as much (shared evidence, e.g. a stroke common to 3 and 8); the margin rewards only
  what separates c from its nearest rival, and a map that supports r more than c gets a negative importance and is
  pre-filtered out. It costs the same single forward + backward pass: the model is wrapped to return the margin
  (:class:`~captum_qubo.attribution.layer_evaluation.MarginForward`), so ``gradients`` must be ∂(z_c − z_r)/∂f.
  With this importance the explanation map is built from ᾱ (the margin's Grad-CAM weight, the only gradient that
  pass gives): it shows the evidence for c *over* r. It needs a (N, classes) output with at least two classes.

The pre-filter (keep maps with importance > 0) applies to the chosen importance.
"""
from __future__ import annotations

from torch import Tensor

IMPORTANCES = ("gradient", "contribution", "gradient_x_activation", "contrastive")

#: Importances computed on the margin z_c − z_r over the runner-up class (their ``gradients`` are of the margin).
MARGIN_IMPORTANCES = ("contrastive",)


def map_importance(kind: str, gradients: Tensor, activations: Tensor) -> Tensor:
    """Per-sample, per-map importance from the layer's gradients and activations.

    Args:
        kind: one of :data:`IMPORTANCES`.
        gradients: (N, C, H, W) ∂z_c/∂f at the layer; ∂(z_c − z_r)/∂f for :data:`MARGIN_IMPORTANCES`.
        activations: (N, C, H, W) the layer's feature maps f.

    Returns:
        (N, C) importance in the dtype of ``gradients``.

    Raises:
        ValueError: unknown ``kind`` or shapes that disagree.
    """
    if kind not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got {kind!r}")
    if gradients.dim() != 4 or gradients.shape != activations.shape:
        raise ValueError(
            f"gradients and activations must both be (N, C, H, W) of one shape, got {tuple(gradients.shape)} "
            f"and {tuple(activations.shape)}"
        )
    if kind == "gradient_x_activation":
        return (gradients * activations.to(gradients.dtype)).sum(dim=(2, 3))
    alpha = gradients.mean(dim=(2, 3))
    if kind == "gradient":
        return alpha
    return alpha * activations.to(alpha.dtype).sum(dim=(2, 3))
