"""Solve every QUBO of a batch with the configured sampler: one batched pass, or all dimod calls in flight at once.

The dense tabu search (``"dense-tabu"``, the default) gets the batch's padded tensors directly, on their device.
Any other ``dimod.Sampler`` gets one BQM per sample; all of them are submitted before any result is read, so a
remote solver (QPU, hybrid) works on them while the network round trips overlap.
"""
from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Any, Dict, List, Optional

import dimod
import numpy as np
import torch
from torch import Tensor

from captum_qubo.formulation.batched import BatchedFeatureMapQubo
from captum_qubo.solvers.dense_sampler import DenseTabuSampler
from captum_qubo.solvers.dense_tabu import dense_tabu_search
from captum_qubo.solvers.registry import submit_sample


@dataclass(frozen=True)
class BatchSolution:
    """The selected variables of every problem of a batch.

    Attributes:
        states: (B, D) bool on the problems' device, False on padding.
        energies: (B,) float64 numpy, each problem's energy of its state (penalty included: 0 on K-hot states).
        infos: per problem, the sampler's report (``SampleSet.info``, or the search's iteration count).
        solve_seconds: per problem, its share of the solve time (the batch's time split evenly when solved as one).
    """

    states: Tensor
    energies: np.ndarray
    infos: List[Dict[str, Any]]
    solve_seconds: List[float]


def solve_batch(
    qubos: BatchedFeatureMapQubo, sampler: dimod.Sampler, seed: Optional[int], sampler_kwargs: Dict[str, Any]
) -> BatchSolution:
    """Minimise every problem of ``qubos`` with ``sampler`` (problems without variables are skipped).

    Args:
        qubos: the batch's QUBOs.
        sampler: a resolved ``dimod.Sampler``; a :class:`DenseTabuSampler` solves the whole batch in one pass.
        seed: the seed for samplers that take one.
        sampler_kwargs: keyword arguments for the sampler (registry defaults already merged).

    Returns:
        :class:`BatchSolution`.
    """
    if isinstance(sampler, DenseTabuSampler):
        return _solve_dense(qubos, seed, sampler_kwargs)
    return _solve_each(qubos, sampler, seed, sampler_kwargs)


def _solve_dense(qubos: BatchedFeatureMapQubo, seed: Optional[int], sampler_kwargs: Dict[str, Any]) -> BatchSolution:
    kwargs = dict(sampler_kwargs)
    kwargs.pop("device", None)  # the batch is solved where its tensors are
    if "k" in kwargs:
        raise ValueError("sampler_kwargs 'k' is set by the explainer's formulation; use k=... with formulation='k_hot'")
    if "quadratic_scale" in kwargs:
        raise ValueError("sampler_kwargs 'quadratic_scale' is set by the explainer's β and pair_convention; drop it")
    num_starts = kwargs.pop("num_reads", None)
    if num_starts is not None:
        kwargs["num_starts"] = num_starts
    batch, width = qubos.mask.shape
    states = torch.zeros((batch, width), dtype=torch.bool, device=qubos.mask.device)
    nonempty = (qubos.num_variables > 0).nonzero().flatten()
    start = perf_counter()
    iterations = 0
    if len(nonempty):
        # Indexing copies the (B, D, D) couplings: only done when some sample has nothing to solve.
        every = len(nonempty) == batch
        result = dense_tabu_search(
            qubos.linear if every else qubos.linear[nonempty], qubos.J if every else qubos.J[nonempty],
            qubos.mask if every else qubos.mask[nonempty], k=qubos.k, seed=seed, quadratic_scale=qubos.quadratic_scale,
            **kwargs
        )
        states[nonempty] = result.states
        iterations = result.iterations
    elapsed = perf_counter() - start
    energies = selection_energies(qubos, states)
    info = {"iterations": iterations}
    return BatchSolution(states, energies, [dict(info) for _ in range(batch)], [elapsed / max(batch, 1)] * batch)


def _solve_each(
    qubos: BatchedFeatureMapQubo, sampler: dimod.Sampler, seed: Optional[int], sampler_kwargs: Dict[str, Any]
) -> BatchSolution:
    limit = dict(getattr(sampler, "properties", {}) or {}).get("max_num_variables")
    sizes = qubos.num_variables.tolist()
    for index, d in enumerate(sizes):
        if limit is not None and d > limit:
            raise ValueError(
                f"sample {index} has d={d} variables but sampler {type(sampler).__name__} handles at most {limit}; "
                f"pass max_variables={limit} or use a heuristic sampler such as 'dense-tabu'"
            )
    problems = [qubos.problem(i) for i in range(qubos.num_problems)]
    # Submit everything first: dimod SampleSets resolve lazily, so remote solves overlap.
    start = perf_counter()
    pending = [submit_sample(problem.to_bqm(), sampler, seed, **sampler_kwargs) for problem in problems]
    submitted = perf_counter() - start
    states = torch.zeros(qubos.mask.shape, dtype=torch.bool)
    energies, infos, seconds = [], [], []
    for index, (problem, call) in enumerate(zip(problems, pending)):
        start = perf_counter()
        best = call.result()
        seconds.append(submitted / len(problems) + perf_counter() - start)
        states[index, : problem.num_variables] = torch.as_tensor(best.state.astype(bool))
        energies.append(best.energy)
        infos.append(best.info)
    return BatchSolution(states.to(qubos.mask.device), np.asarray(energies, dtype=np.float64), infos, seconds)


def selection_energies(qubos: BatchedFeatureMapQubo, states: Tensor) -> np.ndarray:
    """(B,) energies of K-hot or unconstrained states, each computed from its own selected entries only.

    Σ_S linear + Σ_{p<q∈S} quadratic (−β Σ_S h + (1−β) Σ_{p<q∈S} J under the ``"half"`` pair convention; the k_hot
    penalty is 0 on K-hot states). Summing only the selected entries, in their own order, makes a problem's reported
    energy independent of the batch it was solved in.
    """
    energies = np.zeros(qubos.num_problems)
    linear = qubos.linear.detach().double().cpu().numpy()
    # On a CPU the couplings are read in place (numpy indexing costs far less per sample than torch's); from another
    # device only each sample's selected block is copied over.
    on_cpu = qubos.J.device.type == "cpu"
    couplings = qubos.J.detach().double().numpy() if on_cpu else qubos.J.detach()
    for index, chosen in enumerate(states.detach().bool().cpu().numpy()):
        chosen = np.flatnonzero(chosen)
        if chosen.size:
            if on_cpu:
                block = couplings[index][np.ix_(chosen, chosen)]
            else:
                rows = torch.as_tensor(chosen, device=couplings.device)
                block = couplings[index][rows][:, rows].cpu().numpy()
            pairs = float((qubos.quadratic_scale * block.astype(np.float64)).sum()) / 2.0
            energies[index] = float(linear[index, chosen].sum()) + pairs
    return energies
