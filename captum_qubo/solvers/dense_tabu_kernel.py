"""The dense tabu search of :mod:`captum_qubo.solvers.dense_tabu`, compiled for the CPU with numba.

On a CPU a (B, R, slots, D) torch step costs far more in per-operation overhead than in arithmetic: a real head
QUBO (d ≈ 300) spends ~1.5 ms per step at batch 1 though a step is ~5k multiply-adds per start. This kernel runs
the same search one start at a time in compiled loops. It makes exactly the moves of the torch implementation —
the same start sets, the same best-non-tabu move with aspiration, ties to the lowest slot and then the lowest
variable, the same incremental updates in the same order — so both give bit-identical states and energies
(``tests/test_dense_tabu.py`` checks it). The torch implementation stays the one used on GPUs.

The scans for the best swap out of each kept slot are the costly part of a step (O(d) per slot). Two bounds
keep the moves exactly those of a full scan while skipping most of it:

- A slot is skipped when a lower bound on its best swap — the lowest allowed field, minus the largest coupling
  of its map, minus that map's field — cannot beat the best move found so far; slots are visited lowest bound
  first. Each map's largest coupling is taken from its row the first time it enters (rows are read then anyway),
  so no pass over the whole (d, d) matrix is needed.
- Without negative couplings (checked on every row that entered) a map's field is at least its linear term, so
  a slot's scan visits maps by ascending linear term and stops once that term (less the rounding the fields can
  have accumulated) exceeds the best entry so far or the value above which the swap cannot win the step. That
  pays where few maps carry most of the importance (head QUBOs, averaged over scans: ~13 % of the maps visited
  for k_hot K = 5, ~34 % unconstrained). A problem whose ordered scans visit more than a quarter of its maps
  (judged after its first 32) switches to the vectorised scan in index order, which is faster per map: most
  unconstrained head QUBOs do, and so do flat importances such as the solver table's random family.
  A vectorised scan finds only its slot's best value; which map enters is looked up once per step, for the
  winning move alone (ties to the lowest index, as a full scan's).

Rounding is monotone and the margins cover the fields' accumulated rounding, so the bounds hold in floating point.

:func:`dense_enumeration_kernel` solves small problems exactly instead.

Everything is float64; ``inf`` marks a variable that may not enter.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_IMPROVEMENT = 1e-12  # keep equal to dense_tabu._IMPROVEMENT
# A problem's swap scans go by ascending linear term while they visit at most this share of its maps (judged
# after this many scans); above it the vectorised scan in index order is faster.
_ORDERED_SCAN_SHARE = 0.25
_SCANS_BEFORE_CHOOSING = 32
# Where a candidate move's entering map is: already found, or still to look up among the non-tabu maps or all maps.
_FOUND, _NON_TABU_MAP, _ANY_MAP = 0, 1, 2


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
def _ordered_best_entry(entering, row, scan_order, scan_linear, slack, cut):
    """``(value, q, visited)``: the lowest ``entering[q] − row[q]``, ties to the lower index, found by visiting maps
    by ascending linear term (``scan_order``, ``scan_linear``).

    Valid only when no row that entered this start has a negative coupling: a map's value is then at least its linear term less
    ``slack`` (the rounding its field can have accumulated), so the scan stops once that bound exceeds the best
    value so far — the result of a scan over every map — or exceeds ``cut``, a value above which this swap cannot
    win (the result then only has to lose, and does).
    """
    best, best_q, visited = np.inf, 0, 0
    for position in range(scan_order.shape[0]):
        lower = scan_linear[position] - slack
        if lower > best or lower > cut:
            break
        visited += 1
        q = scan_order[position]
        value = entering[q] - row[q]
        if value < best or (value == best and q < best_q):
            best, best_q = value, q
    return best, best_q, visited


@njit(cache=True)
def _with_tabu(allowed, tabu, tabu_count, row, best, best_q):
    """The lowest ``allowed[q] − row[q]`` over all maps (for aspiration) from the best non-tabu one and the few tabu
    maps, ties to the lower index."""
    for position in range(tabu_count):
        q = tabu[position]
        value = allowed[q] - row[q]
        if value < best or (value == best and q < best_q):
            best, best_q = value, q
    return best, best_q


@njit(cache=True)
def _lowest_tabu_difference(allowed, tabu, tabu_count, row, lowest):
    """min of ``lowest`` and ``allowed[q] − row[q]`` over the few tabu maps (the value :func:`_with_tabu` finds)."""
    for position in range(tabu_count):
        q = tabu[position]
        lowest = min(lowest, allowed[q] - row[q])
    return lowest


@njit(cache=True, fastmath={"nnan"})
def _lowest(values, end):
    """min of ``values[:end]`` (never NaN, so the reduction may be reordered)."""
    lowest = np.inf
    for q in range(end):
        lowest = min(lowest, values[q])
    return lowest


@njit(cache=True, fastmath={"nnan"})
def _lowest_difference(values, row, end):
    """min of ``values[:end] − row[:end]``."""
    lowest = np.inf
    for q in range(end):
        lowest = min(lowest, values[q] - row[q])
    return lowest


@njit(cache=True)
def _first_equal_difference(values, row, end, target):
    """The first q < end with ``values[q] − row[q] == target`` (0 if none)."""
    for q in range(end):
        if values[q] - row[q] == target:
            return q
    return 0


@njit(cache=True, fastmath={"nnan"})
def _row_range(row, real, end, contiguous):
    """(min, max) of ``row`` over the real q < end (finite couplings: the reduction may be reordered)."""
    low, high = np.inf, -np.inf
    if contiguous:
        for q in range(end):
            low, high = min(low, row[q]), max(high, row[q])
    else:
        for q in range(end):
            if real[q]:
                low, high = min(low, row[q]), max(high, row[q])
    return low, high


@njit(cache=True)
def _note_entry(variable, row, real, end, contiguous, row_low, row_high, nonnegative, largest_coupling):
    """A map entered with its scaled coupling ``row``: cache the row's extremes on its first entry, and return
    whether every entered row is still non-negative and the largest coupling entered so far."""
    if np.isnan(row_high[variable]):
        row_low[variable], row_high[variable] = _row_range(row, real, end, contiguous)
    return nonnegative and row_low[variable] >= 0.0, max(largest_coupling, row_high[variable])


@njit(cache=True)
def _search_one_start(linear, problem_rows, scale, real, contiguous, scan_order, scan_linear, largest_linear, row_low,
                      row_high, scan_counts, order, size, tenure, k, slots, start_size, greedy_start, patience, max_iterations,
                      best_state_out):
    """One start of one problem; writes its best state into ``best_state_out`` and returns (best energy, steps).

    ``row_low`` / ``row_high`` (NaN until known) cache, per problem, the smallest and largest scaled coupling of
    each map's row, filled the first time that map enters (so no pass over the whole coupling matrix).
    ``scan_counts`` (per problem): ordered scans taken, maps they visited, maps they could have visited.
    """
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
    # The fields' accumulated rounding: at most two roundings per step, each within 2⁻⁵² of the largest field,
    # |linear| + (slots + 1)·(largest coupling entered so far), with a factor 4 to spare.
    rounding = 4.0 * (2.0 * (max_iterations + slots) + 4.0) * 2.0 ** -52
    largest_coupling, nonnegative = 0.0, True

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
        nonnegative, largest_coupling = _note_entry(variable, selected_rows[slot], real, end, contiguous, row_low,
                                                    row_high, nonnegative, largest_coupling)
    best_energy = energy
    best_state_out[:] = state

    allowed = np.empty(width)
    entering = np.empty(width)
    tabu = np.empty(width, dtype=np.int64)
    removed = np.empty(width, dtype=np.int64)  # maps that may still be tabu, in the order they left
    removed_count = 0
    bounds = np.empty(slots)
    ordered = np.empty(slots, dtype=np.int64)
    stale = 0
    steps = 0
    for iteration in range(max_iterations):
        if stale >= patience:
            break
        for q in range(end):  # no variable beyond the last real one can enter
            value = fields[q] + kept_block[q] + padding_block[q]
            allowed[q] = value
            entering[q] = np.inf if enter_until[q] > iteration else value
        # An empty slot's candidates (additions) are the same for every empty slot; the lowest allowed field
        # also bounds every swap below.
        empty_min, empty_any = _lowest(entering, end), _lowest(allowed, end)
        # The tabu maps that could otherwise enter (only aspiration lets them in) are among the recently removed.
        tabu_count, live = 0, 0
        for position in range(removed_count):
            q = removed[position]
            if enter_until[q] > iteration:
                removed[live] = q
                live += 1
                if allowed[q] < np.inf:
                    tabu[tabu_count] = q
                    tabu_count += 1
        removed_count = live
        slack = rounding * (largest_linear + (slots + 1) * largest_coupling)
        pruning = nonnegative and np.isfinite(slack)
        # The winner is the lowest (swap change, slot) pair, with removals after every swap among ties. Slots are
        # visited most promising first, and a slot is skipped when even its lower bound (no map enters for less
        # than the lowest allowed field, and no kept row couples more than its largest entry) cannot win, so the
        # moves are those of a full scan in slot order.
        move_delta, move_slot, move_incoming, move_removal = np.inf, slots, 0, False
        # Where a vectorised scan found a move's value, the map that enters is looked up only once the move has
        # won the step (one index search per step instead of one per scanned slot): the lowest q whose entry
        # value in ``move_pool`` equals ``move_value``.
        move_pool, move_value = _FOUND, 0.0
        filled_count = 0
        for slot in range(slots):
            if filled[slot]:
                bound = (empty_any - row_high[selected[slot]]) - fields[selected[slot]]
                position = filled_count
                while position > 0 and bounds[position - 1] > bound:
                    bounds[position], ordered[position] = bounds[position - 1], ordered[position - 1]
                    position -= 1
                bounds[position], ordered[position] = bound, slot
                filled_count += 1
            elif move_slot == slots:
                # Aspiration: a tabu map may enter when that reaches a new best energy.
                if energy + empty_any < best_energy - _IMPROVEMENT:
                    move_delta, move_pool = empty_any, _ANY_MAP
                else:
                    move_delta, move_pool = empty_min, _NON_TABU_MAP
                move_slot, move_value = slot, move_delta
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
            # A swap wins only with a change at most the best move's (removals included): entry values above
            # that plus field_out (with the rounding margin) need not be scanned.
            cut = (min(move_delta, removal_delta) + field_out) + slack
            # The ordered scan pays while it visits few maps; where it does not (flat importances), the problem's
            # later scans take the vectorised full one. Either finds the same entry.
            ordered_scan = pruning and (scan_counts[0] < _SCANS_BEFORE_CHOOSING
                                        or _ORDERED_SCAN_SHARE * scan_counts[2] >= scan_counts[1])
            row = selected_rows[slot]
            # Aspiration needs the best of all maps: the non-tabu best and the few tabu maps.
            if ordered_scan:
                per_slot, incoming, visited = _ordered_best_entry(entering, row, scan_order, scan_linear, slack, cut)
                scan_counts[0] += 1
                scan_counts[1] += visited
                scan_counts[2] += size
                any_slot, any_incoming = _with_tabu(allowed, tabu, tabu_count, row, per_slot, incoming)
                pool = any_pool = _FOUND
            else:
                per_slot = _lowest_difference(entering, row, end)
                any_slot = _lowest_tabu_difference(allowed, tabu, tabu_count, row, per_slot)
                incoming = any_incoming = 0
                pool, any_pool = _NON_TABU_MAP, _ANY_MAP
            swap, value = per_slot - field_out, per_slot
            if energy + any_slot - field_out < best_energy - _IMPROVEMENT:
                swap, value, incoming, pool = any_slot - field_out, any_slot, any_incoming, any_pool
            if swap < move_delta or (swap == move_delta and slot < move_slot):
                move_delta, move_slot, move_incoming, move_pool, move_value = swap, slot, incoming, pool, value
        if removal_delta < move_delta:
            move_delta, move_slot, move_removal = removal_delta, removal_slot, True
        if not np.isfinite(move_delta):
            break
        if not move_removal and move_pool != _FOUND:
            # An empty slot's row is all zeros (x − 0.0 == x), so one look-up serves additions and swaps.
            candidates = allowed if move_pool == _ANY_MAP else entering
            move_incoming = _first_equal_difference(candidates, selected_rows[move_slot], end, move_value)
        if filled[move_slot] and enter_until[selected[move_slot]] <= iteration:
            removed[removed_count] = selected[move_slot]  # becomes tabu (one still tabu is listed already)
            removed_count += 1
        energy = _apply(move_slot, move_incoming, move_removal, iteration, problem_rows, scale, tenure, state, fields,
                        energy, enter_until, kept_block, selected, filled, selected_rows, end)
        if not move_removal:
            nonnegative, largest_coupling = _note_entry(move_incoming, selected_rows[move_slot], real, end, contiguous,
                                                        row_low, row_high, nonnegative, largest_coupling)
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
        real = mask[b]
        size, end, largest_linear = 0, 0, 0.0
        for q in range(width):
            if real[q]:
                size += 1
                end = q + 1
                largest_linear = max(largest_linear, abs(linear[b, q]))
        contiguous = size == end  # no holes among the real variables
        # The real variables by ascending linear term: the swap scans' visiting order.
        scan_order = np.argsort(np.where(real, linear[b], np.inf), kind="mergesort")[:size]
        scan_linear = linear[b][scan_order]
        row_low = np.full(width, np.nan)
        row_high = np.full(width, np.nan)
        scan_counts = np.zeros(3, dtype=np.int64)
        for r in range(starts):
            best_energies[b, r], steps[b, r] = _search_one_start(
                linear[b], quadratic[b], scale, real, contiguous, scan_order, scan_linear, largest_linear, row_low,
                row_high, scan_counts, order[b, r], size, tenure[b], k, slots, start_sizes[r], k >= 0 and r == 0, patience[b],
                max_iterations, best_states[b, r],
            )
    return best_states, best_energies, steps


@njit(cache=True)
def smallest_keys_kernel(keys, count):
    """(B, R, count) int64: for every problem and start, the indices of its ``count`` smallest keys (B, R, D),
    smallest first, equal keys by ascending index."""
    batch, starts, width = keys.shape
    order = np.zeros((batch, starts, count), dtype=np.int64)
    if count == 0:
        return order
    smallest = np.empty(count)
    for b in range(batch):
        for r in range(starts):
            row, chosen = keys[b, r], order[b, r]
            taken = 0
            for q in range(width):
                key = row[q]
                if taken == count and not key < smallest[count - 1]:
                    continue
                position = taken if taken < count else count - 1
                while position > 0 and key < smallest[position - 1]:
                    smallest[position], chosen[position] = smallest[position - 1], chosen[position - 1]
                    position -= 1
                smallest[position], chosen[position] = key, q
                taken = min(taken + 1, count)
    return order


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
