"""Explanation-quality metrics as torchmetrics ``Metric`` subclasses (states sync across processes).

Direction and range of each metric are stated in its docstring; see also the README table.
"""
from captum_qubo.metrics.deletion_insertion import (
    DeletionAUC,
    InsertionAUC,
    deletion_insertion_curve,
    gaussian_blur,
    make_baseline,
)
from captum_qubo.metrics.disentanglement import ClassDisentanglement, channel_sets_to_mask, top_k_mask
from captum_qubo.metrics.embedding_separation import (
    CosineSilhouetteScore,
    DaviesBouldinIndex,
    cosine_silhouette_score,
    davies_bouldin_index,
)
from captum_qubo.metrics.faithfulness import (
    AverageDrop,
    IncreaseInConfidence,
    masked_confidences,
    masked_confidences_of_methods,
)
from captum_qubo.metrics.selection_faithfulness import (
    Comprehensiveness,
    Sufficiency,
    reference_map_means,
    selection_curve,
    selection_probabilities,
)
from captum_qubo.metrics.pointing_game import (
    GridComposites,
    GridPointingGame,
    build_grid_composites,
    cell_attribution_shares,
)

__all__ = [
    "AverageDrop",
    "Comprehensiveness",
    "Sufficiency",
    "ClassDisentanglement",
    "CosineSilhouetteScore",
    "DaviesBouldinIndex",
    "DeletionAUC",
    "GridComposites",
    "GridPointingGame",
    "IncreaseInConfidence",
    "InsertionAUC",
    "build_grid_composites",
    "cell_attribution_shares",
    "channel_sets_to_mask",
    "cosine_silhouette_score",
    "davies_bouldin_index",
    "deletion_insertion_curve",
    "gaussian_blur",
    "make_baseline",
    "reference_map_means",
    "selection_curve",
    "selection_probabilities",
    "masked_confidences",
    "masked_confidences_of_methods",
    "top_k_mask",
]
