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

#: Most entries of the selected (S, S) coupling blocks that :func:`selection_energies` gathers at once (32 MB of
#: float64; the block's mask and dtype copy about double the peak).
ENERGY_BLOCK_ENTRIES = 1 << 22


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
    penalty is 0 on K-hot states). All problems are summed together, but each one's entries in its own order,
    one addition at a time: a shorter selection only adds exact zeros, so a problem's reported energy does not
    depend on the batch it was solved in. Only the selected blocks are gathered (on the problems' device), in
    chunks of at most :data:`ENERGY_BLOCK_ENTRIES` entries.
    """
    batch = qubos.num_problems
    chosen = states.detach().to(qubos.mask.device).bool() & qubos.mask
    counts = chosen.sum(dim=1)
    width = int(counts.max()) if batch else 0
    if width == 0:
        return np.zeros(batch)
    # Each problem's selected positions, ascending, then padding (whose entries are zeroed below).
    positions = (~chosen).to(torch.uint8).argsort(dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=positions.device) < counts[:, None]
    linear = torch.where(valid, qubos.linear.detach().gather(1, positions), 0.0).double().cpu().numpy()
    pair_sums = np.zeros(batch)
    chunk = max(1, ENERGY_BLOCK_ENTRIES // (width * width))
    for start in range(0, batch, chunk):
        rows = slice(start, start + chunk)
        index, inside = positions[rows], valid[rows]
        problems = torch.arange(index.shape[0], device=index.device)[:, None, None]
        block = qubos.J.detach()[rows][problems, index[:, :, None], index[:, None, :]]
        block = torch.where(inside[:, :, None] & inside[:, None, :], block, 0.0).double().cpu().numpy()
        pair_sums[rows] = _sequential_sum(_sequential_sum(block))
    return _sequential_sum(linear) + qubos.quadratic_scale * pair_sums / 2.0


def _sequential_sum(values: np.ndarray) -> np.ndarray:
    """Sum over the last axis one entry at a time, in order (numpy's own sum regroups by length)."""
    total = np.zeros(values.shape[:-1])
    for position in range(values.shape[-1]):
        total += values[..., position]
    return total
