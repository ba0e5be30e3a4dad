"""DenseTabuSampler: the batched dense tabu search as a ``dimod.Sampler`` (registered as ``"dense-tabu"``).

Through this interface it solves one BQM per call, like every other backend, so it can be compared with and
swapped for them; :class:`~captum_qubo.attribution.QuboFeatureMapAttribution` skips the BQM and gives it a whole
batch of QUBO tensors at once.
"""
from __future__ import annotations

from typing import Any, Optional

import dimod
import numpy as np
import torch

from captum_qubo.solvers.dense_tabu import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_NUM_STARTS,
    dense_tabu_search,
)


class DenseTabuSampler(dimod.Sampler):
    """Multi-start tabu search on the dense form of a BQM: compiled loops on a CPU, torch with ``device="cuda"``.

    ``num_reads`` is the number of starts; the sample set holds each start's best state. With ``k`` every state is
    exactly k-hot (pair-swap moves); without it, single flips. ``seed`` makes runs identical. BQMs of at most
    ``exhaustive_max_variables`` variables (default :data:`~captum_qubo.solvers.dense_tabu.EXHAUSTIVE_MAX_VARIABLES`,
    16) are enumerated instead when numba is installed: exact.
    """

    parameters = {
        "num_reads": [],
        "seed": [],
        "k": [],
        "tenure": [],
        "patience": [],
        "max_iterations": [],
        "exhaustive_max_variables": [],
        "device": [],
    }
    properties = {"device_types": ["cpu", "cuda"]}

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int = DEFAULT_NUM_STARTS,
        seed: Optional[int] = None,
        k: Optional[int] = None,
        tenure: Optional[int] = None,
        patience: Optional[int] = None,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
        exhaustive_max_variables: Optional[int] = None,
        device: Any = "cpu",
        **kwargs: Any,
    ) -> dimod.SampleSet:
        """Minimise ``bqm``.

        Args:
            bqm: any binary quadratic model (SPIN models are solved in their BINARY form).
            num_reads: starts, one sample each.
            seed: seeds the random starts; None draws fresh randomness.
            k: keep exactly k variables equal to 1 (None: unconstrained).
            tenure, patience, max_iterations, exhaustive_max_variables: as for
                :func:`~captum_qubo.solvers.dense_tabu.dense_tabu_search` (with numba, BQMs of at most
                :data:`~captum_qubo.solvers.dense_tabu.EXHAUSTIVE_MAX_VARIABLES` variables are solved exactly by
                enumeration by default; every read then holds the optimum).
            device: torch device to search on.

        Returns:
            A ``dimod.SampleSet`` in the BQM's vartype with ``num_reads`` rows and
            ``info["iterations"]``.
        """
        if kwargs:
            raise ValueError(f"DenseTabuSampler takes no {sorted(kwargs)}; its parameters are {sorted(self.parameters)}")
        labels = list(bqm.variables)
        if not labels:
            return dimod.SampleSet.from_samples_bqm(([[]] * num_reads, []), bqm, info={"iterations": 0})
        binary = bqm.change_vartype(dimod.BINARY, inplace=False) if bqm.vartype is dimod.SPIN else bqm
        linear, (rows, cols, values), _ = binary.to_numpy_vectors(variable_order=labels)
        quadratic = np.zeros((len(labels), len(labels)))
        np.add.at(quadratic, (rows, cols), values)
        quadratic = quadratic + quadratic.T
        result = dense_tabu_search(
            torch.as_tensor(linear, dtype=torch.float64, device=device)[None],
            torch.as_tensor(quadratic, dtype=torch.float64, device=device)[None],
            k=k,
            num_starts=num_reads,
            seed=seed,
            tenure=tenure,
            patience=patience,
            max_iterations=max_iterations,
            exhaustive_max_variables=exhaustive_max_variables,
        )
        states = result.start_states[0].cpu().numpy().astype(np.int8)
        if bqm.vartype is dimod.SPIN:
            states = 2 * states - 1
        return dimod.SampleSet.from_samples_bqm((states, labels), bqm, info={"iterations": result.iterations})
