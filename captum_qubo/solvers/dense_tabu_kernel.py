"""The dense tabu search of :mod:`captum_qubo.solvers.dense_tabu`, compiled for the CPU with numba.

On a CPU a (B, R, slots, D) torch step costs far more in per-operation overhead than in arithmetic: a real head
QUBO (d ≈ 300) spends ~1.5 ms per step at batch 1 though a step is ~5k multiply-adds per start. This kernel runs
the same search one start at a time in compiled loops. It makes exactly the moves of the torch implementation —
the same start sets, the same best-non-tabu move with aspiration, ties to the lowest slot and then the lowest
variable, the same incremental updates in the same order — so both give bit-identical states and energies
(``tests/test_dense_tabu.py`` checks it). The torch implementation stays the one used on GPUs.

The scan for the best swap out of each kept slot is the costly part of a step (O(d) per slot). A slot is skipped
when a lower bound on its best swap — the lowest allowed field, minus the largest coupling of its map, minus that
map's field — cannot beat the best move found so far; slots are visited lowest bound first. Rounding is monotone,
so the bound holds in floating point too, and the moves stay exactly those of the full scan.

:func:`dense_enumeration_kernel` solves small problems exactly instead.

Everything is float64; ``inf`` marks a variable that may not enter.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_IMPROVEMENT = 1e-12  # keep equal to dense_tabu._IMPROVEMENT


@njit(cache=True)
def _apply(slot, incoming, removal, iteration, problem_rows, scale, tenure, state, fields, energy, enter_until, kept_block,
           selected, filled, selected_rows, end):
    """Put ``incoming`` into ``slot`` (or empty it where ``removal``); returns the new energy."""
    was_filled = filled[slot]
    outgoing = selected[slot]
    coming_in = not removal
    if not coming_in:
        incoming = outgoing
    delta = 0.0
    if coming_in:
        coupling = selected_rows[slot, incoming] if was_filled else 0.0
        delta = fields[incoming] - coupling
    energy = energy + (delta - (fields[outgoing] if was_filled else 0.0))
    # One pass over the fields and the slot's row; g + Q[in] − Q[out] is still rounded in that order.
    if coming_in and was_filled:
        for q in range(end):
            row = scale * problem_rows[incoming, q]
            fields[q] = (fields[q] + row) - selected_rows[slot, q]
            selected_rows[slot, q] = row
    elif coming_in:
        for q in range(end):
            row = scale * problem_rows[incoming, q]
            fields[q] = fields[q] + row
            selected_rows[slot, q] = row
    elif was_filled:
        for q in range(end):
            fields[q] = fields[q] - selected_rows[slot, q]
            selected_rows[slot, q] = 0.0
    if was_filled:
        state[outgoing] = 0.0
        kept_block[outgoing] = 0.0
    if coming_in:
        state[incoming] = 1.0
        kept_block[incoming] = np.inf
    if was_filled:
        enter_until[outgoing] = (iteration + 1) + tenure
    selected[slot] = incoming
    filled[slot] = coming_in
    return energy


@njit(cache=True)
def _search_one_start(linear, problem_rows, scale, row_max, real, order, size, tenure, k, slots, start_size, greedy_start, patience,
                      max_iterations, best_state_out):
    """One start of one problem; writes its best state into ``best_state_out`` and returns (best energy, steps)."""
    width = linear.shape[0]
    end = 0
    for q in range(width):
        if real[q]:
            end = q + 1
    state = np.zeros(width)
    fields = linear.copy()
    energy = 0.0
    padding_block = np.zeros(width)
    for q in range(width):
        if not real[q]:
            padding_block[q] = np.inf
    enter_until = padding_block.copy()
    kept_block = np.zeros(width)
    selected = np.zeros(slots, dtype=np.int64)
    filled = np.zeros(slots, dtype=np.bool_)
    selected_rows = np.zeros((slots, width))
    constrained = k >= 0

    for slot in range(min(start_size, size)):
        variable = order[slot]
        if greedy_start:
            lowest = np.inf
            variable = 0
            for q in range(width):
                value = fields[q] + enter_until[q] + kept_block[q]
                if value < lowest:
                    lowest, variable = value, q
        energy = _apply(slot, variable, False, -1, problem_rows, scale, tenure, state, fields, energy, enter_until,
                        kept_block, selected, filled, selected_rows, end)
    best_energy = energy
    best_state_out[:] = state

    allowed = np.empty(width)
    entering = np.empty(width)
    bounds = np.empty(slots)
    ordered = np.empty(slots, dtype=np.int64)
    tabu = np.empty(width, dtype=np.int64)
    stale = 0
    steps = 0
    for iteration in range(max_iterations):
        if stale >= patience:
            break
        # An empty slot's candidates (additions) are the same for every empty slot: computed with the fields.
        empty_min, empty_incoming, empty_any, empty_any_incoming = np.inf, 0, np.inf, 0
        tabu_count = 0
        for q in range(end):  # no variable beyond the last real one can enter
            allowed[q] = fields[q] + kept_block[q] + padding_block[q]
            if enter_until[q] > iteration:
                entering[q] = np.inf
                if allowed[q] < np.inf:  # tabu, and could otherwise enter: only aspiration lets it in
                    tabu[tabu_count] = q
                    tabu_count += 1
            else:
                entering[q] = allowed[q]
            if entering[q] < empty_min:
                empty_min, empty_incoming = entering[q], q
            if allowed[q] < empty_any:
                empty_any, empty_any_incoming = allowed[q], q
        # The winner is the lowest (swap change, slot) pair, with removals after every swap among ties. Slots are
        # visited most promising first, and a slot is skipped when even its lower bound (no map enters for less
        # than the lowest allowed field, and no kept row couples more than its largest entry) cannot win, so the
        # moves are those of a full scan in slot order.
        move_delta, move_slot, move_incoming, move_removal = np.inf, slots, 0, False
        filled_count = 0
        for slot in range(slots):
            if filled[slot]:
                bound = (empty_any - row_max[selected[slot]]) - fields[selected[slot]]
                position = filled_count
                while position > 0 and bounds[position - 1] > bound:
                    bounds[position], ordered[position] = bounds[position - 1], ordered[position - 1]
                    position -= 1
                bounds[position], ordered[position] = bound, slot
                filled_count += 1
            elif move_slot == slots:
                swap, incoming = empty_min, empty_incoming
                # Aspiration: a tabu map may enter when that reaches a new best energy.
                if energy + empty_any < best_energy - _IMPROVEMENT:
                    swap, incoming = empty_any, empty_any_incoming
                move_delta, move_slot, move_incoming = swap, slot, incoming
        removal_delta, removal_slot = np.inf, 0
        if not constrained:
            for slot in range(slots):
                if filled[slot] and -fields[selected[slot]] < removal_delta:
                    removal_delta, removal_slot = -fields[selected[slot]], slot
        for position in range(filled_count):
            bound, slot = bounds[position], ordered[position]
            if bound > removal_delta or bound > move_delta or (bound == move_delta and slot > move_slot):
                continue
            field_out = fields[selected[slot]]
            # The best non-tabu entry in one scan; the best of all entries (for aspiration) adds the few tabu
            # ones, ties to the lower index as a scan over every entry would give.
            per_slot, incoming = np.inf, 0
            for q in range(end):
                value = entering[q] - selected_rows[slot, q]
                if value < per_slot:
                    per_slot, incoming = value, q
            any_slot, any_incoming = per_slot, incoming
            for position_tabu in range(tabu_count):
                q = tabu[position_tabu]
                value = allowed[q] - selected_rows[slot, q]
                if value < any_slot or (value == any_slot and q < any_incoming):
                    any_slot, any_incoming = value, q
            swap = per_slot - field_out
            if energy + any_slot - field_out < best_energy - _IMPROVEMENT:
                swap, incoming = any_slot - field_out, any_incoming
            if swap < move_delta or (swap == move_delta and slot < move_slot):
                move_delta, move_slot, move_incoming = swap, slot, incoming
        if removal_delta < move_delta:
            move_delta, move_slot, move_removal = removal_delta, removal_slot, True
        if not np.isfinite(move_delta):
            break
        energy = _apply(move_slot, move_incoming, move_removal, iteration, problem_rows, scale, tenure, state, fields, energy,
                        enter_until, kept_block, selected, filled, selected_rows, end)
        steps = iteration + 1
        if energy < best_energy - _IMPROVEMENT:
            best_energy = energy
            best_state_out[:] = state
            stale = 0
        else:
            stale += 1
    return best_energy, steps


@njit(cache=True)
def dense_tabu_kernel(linear, quadratic, scale, mask, order, tenure, k, slots, start_sizes, patience, max_iterations):
    """Every start of every problem, one after another.

    Args:
        linear: (B, D) float64. quadratic: (B, D, D) float64, symmetric, zero diagonal; the couplings are
            ``scale * quadratic``, scaled as read. mask: (B, D) bool.
        order: (B, R, m) int64, the first m variables of each start, in the order its random start takes them.
        tenure: (B,) float64 tabu tenure per problem. k: cardinality, or -1 for unconstrained.
        slots: kept-map slots (k for k_hot). start_sizes: (R,) int64 maps in each start's initial set.
        patience: (B,) int64 steps without improvement after which a start stops, per problem.
        max_iterations: as in :func:`captum_qubo.solvers.dense_tabu.dense_tabu_search`.

    Returns:
        (B, R, D) float64 best states, (B, R) float64 best energies, (B, R) int64 steps taken.
    """
    batch, starts = order.shape[:2]
    width = linear.shape[1]
    best_states = np.zeros((batch, starts, width))
    best_energies = np.zeros((batch, starts))
    steps = np.zeros((batch, starts), dtype=np.int64)
    for b in range(batch):
        size = 0
        for q in range(width):
            if mask[b, q]:
                size += 1
        # Each variable's largest coupling: the swap scan's lower bounds.
        row_max = np.full(width, -np.inf)
        for p in range(width):
            for q in range(width):
                if mask[b, q] and scale * quadratic[b, p, q] > row_max[p]:
                    row_max[p] = scale * quadratic[b, p, q]
        for r in range(starts):
            best_energies[b, r], steps[b, r] = _search_one_start(
                linear[b], quadratic[b], scale, row_max, mask[b], order[b, r], size, tenure[b], k, slots, start_sizes[r],
                k >= 0 and r == 0, patience[b], max_iterations, best_states[b, r],
            )
    return best_states, best_energies, steps


@njit(cache=True)
def dense_enumeration_kernel(linear, quadratic, scale, mask, k):
    """The exact optimum of every problem by enumerating all 2^d states (for small d).

    The variables split into a low and a high half. The low half's own energies are tabulated once, in Gray-code
    order (one O(d) field update per state). The high half then runs through its states in Gray-code order too,
    updating its own energy and the fields g it puts on the low variables; for each high state the low states
    follow in the tabulated order, and the coupling between the halves changes by one ±g per step. So a state
    costs O(1), not O(d). Among equal energies the state with the lowest binary index Σ n_p 2^p (over the real
    variables in order) wins. With ``k >= 0`` only K-hot states count.

    Args:
        linear: (B, D) float64. quadratic: (B, D, D) float64, symmetric, zero diagonal; couplings ``scale * quadratic``.
        mask: (B, D) bool; at most 62 real variables per problem. k: cardinality, or -1 for unconstrained.

    Returns:
        (B, D) float64 optimal states, (B,) float64 their energies.
    """
    batch, width = linear.shape
    best_states = np.zeros((batch, width))
    best_energies = np.zeros(batch)
    real = np.empty(width, dtype=np.int64)
    for b in range(batch):
        size = 0
        for q in range(width):
            if mask[b, q]:
                real[size] = q
                size += 1
        low = (size + 1) // 2
        low_steps = 1 << low
        # The low half alone: energy, binary code, flipped bit, its direction (±1) and cardinality at each
        # Gray-code step.
        low_energy = np.zeros(low_steps)
        low_code = np.zeros(low_steps, dtype=np.int64)
        low_flip = np.zeros(low_steps, dtype=np.int64)
        low_sign = np.zeros(low_steps)
        low_count = np.zeros(low_steps, dtype=np.int64)
        fields = np.empty(low)
        for i in range(low):
            fields[i] = linear[b, real[i]]
        state = np.zeros(size, dtype=np.bool_)
        energy, count = 0.0, 0
        for step in range(1, low_steps):
            flip = _lowest_set_bit(step)
            p = real[flip]
            sign = -1.0 if state[flip] else 1.0
            energy = energy + sign * fields[flip]
            for i in range(low):
                fields[i] = fields[i] + sign * (scale * quadratic[b, p, real[i]])
            state[flip] = not state[flip]
            count += 1 if sign > 0 else -1
            low_energy[step], low_code[step], low_count[step] = energy, step ^ (step >> 1), count
            low_flip[step], low_sign[step] = flip, sign
        # The high half: its own energy and fields, and the fields g it puts on the low variables.
        high_fields = np.empty(size - low)
        for j in range(size - low):
            high_fields[j] = linear[b, real[low + j]]
        cross_fields = np.zeros(low)
        high_energy, high_count = 0.0, 0
        best_energy, best_code = np.inf, 0
        for high_step in range(1 << (size - low)):
            if high_step:
                flip = _lowest_set_bit(high_step)
                p = real[low + flip]
                sign = -1.0 if state[low + flip] else 1.0
                high_energy = high_energy + sign * high_fields[flip]
                for j in range(size - low):
                    high_fields[j] = high_fields[j] + sign * (scale * quadratic[b, p, real[low + j]])
                for i in range(low):
                    cross_fields[i] = cross_fields[i] + sign * (scale * quadratic[b, p, real[i]])
                state[low + flip] = not state[low + flip]
                high_count += 1 if sign > 0 else -1
            high_code = (high_step ^ (high_step >> 1)) << low
            cross = 0.0
            for step in range(low_steps):
                if step:
                    cross = cross + low_sign[step] * cross_fields[low_flip[step]]
                if k < 0 or high_count + low_count[step] == k:
                    total = high_energy + (low_energy[step] + cross)
                    code = high_code | low_code[step]
                    if total < best_energy or (total == best_energy and code < best_code):
                        best_energy, best_code = total, code
        for i in range(size):
            if (best_code >> i) & 1:
                best_states[b, real[i]] = 1.0
        best_energies[b] = best_energy
    return best_states, best_energies


@njit(cache=True)
def _lowest_set_bit(step):
    """The bit that Gray code flips at ``step`` (>= 1)."""
    bit = 0
    while not (step >> bit) & 1:
        bit += 1
    return bit
