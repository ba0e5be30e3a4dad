"""The annealing Hamiltonian H(s) = A(s) H_D + B(s) H_P, applied matrix-free in O(2^d) memory.

H_P is diagonal: entry i is the QUBO energy of the bitstring with state index i (bit p of i is
variable p, little-endian, as in :mod:`captum_qubo.solvers.exact`). The driver is a uniform transverse
field H_D = c Σ_p σx_p, where σx_p flips bit p of the index:

- ``driver="standard"``: c = −1, ground state |+⟩^⊗d (uniform amplitudes), energy −d.
- ``driver="paper"``: c = +1/d, the authors' convention (METHOD.md §6); its ground state is
  |−⟩^⊗d, amplitudes (−1)^popcount(i) / √2^d, energy −1.

The two differ by the scale 1/d and by the unitary Z^⊗d, which commutes with H_P; so with equal
|c| they give identical spectra and success probabilities.
"""
from __future__ import annotations

from functools import lru_cache
from typing import List, Tuple

import dimod
import numpy as np

from captum_qubo.solvers.exact import all_energies

DRIVERS = ("standard", "paper")
# Bits handled per dense block when applying H_D or exp(−iθH_D); 4–6 is fastest (blocked gemm).
_BLOCK_BITS = 5


@lru_cache(maxsize=None)
def _flip_counts(num_bits: int) -> np.ndarray:
    """(2^k, 2^k) popcount(i XOR j): how many bits differ between row and column index."""
    index = np.arange(1 << num_bits, dtype=np.uint64)
    return np.bitwise_count(index[:, None] ^ index[None, :]).astype(np.int64)


@lru_cache(maxsize=None)
def _single_flip_sum(num_bits: int) -> np.ndarray:
    """Σ_p σx_p on k bits: ones where row and column index differ in exactly one bit."""
    return (_flip_counts(num_bits) == 1).astype(np.float64)


def _popcounts(num_qubits: int) -> np.ndarray:
    """(2^d,) number of set bits of every state index."""
    return np.bitwise_count(np.arange(1 << num_qubits, dtype=np.uint64))


def _bit_blocks(num_qubits: int) -> List[int]:
    """Sizes of consecutive bit blocks (lowest bits first) that cover num_qubits bits."""
    return [_BLOCK_BITS] * (num_qubits // _BLOCK_BITS) + ([num_qubits % _BLOCK_BITS] if num_qubits % _BLOCK_BITS else [])


@lru_cache(maxsize=None)
def _hadamard_power(num_bits: int) -> np.ndarray:
    """(H/√2)^⊗k: entry (−1)^popcount(row AND column) / √2^k."""
    index = np.arange(1 << num_bits, dtype=np.uint64)
    signs = 1.0 - 2.0 * (np.bitwise_count(index[:, None] & index[None, :]) & 1)
    return signs / np.sqrt(1 << num_bits)


def _over_bit_blocks(vectors: np.ndarray, num_qubits: int, block_matrix, accumulate: bool) -> np.ndarray:
    """Σ_b (I ⊗ M_b ⊗ I) v (accumulate) or Π_b (I ⊗ M_b ⊗ I) v (not), b over the bit blocks.

    M_b = block_matrix(k) acts on the k bits of block b; each block is one matrix product over
    the reshaped state. A (2^d, m) block of columns is done column by column.
    """
    if np.ndim(vectors) == 2:  # column by column: a contiguous vector takes the fastest path
        out = np.empty_like(vectors, order="F")
        for j in range(vectors.shape[1]):
            out[:, j] = _over_bit_blocks(vectors[:, j], num_qubits, block_matrix, accumulate)
        return out
    current = np.ascontiguousarray(vectors)
    low = 1
    total = None
    for k in _bit_blocks(num_qubits):
        width = 1 << k
        matrix = block_matrix(k)
        if low == 1:  # the lowest bits are the fastest index: one (n/2^k, 2^k) product
            term = (current.reshape(-1, width) @ matrix.T).reshape(-1, width, 1)
        else:  # bits in the middle of the index: a batch of (2^k × 2^k)(2^k × low) products
            term = np.matmul(matrix, current.reshape(-1, width, low))
        if not accumulate:
            current = term.reshape(current.shape)
        elif total is None:
            total = term.reshape(current.shape)
        else:
            total.reshape(-1, width, low)[...] += term
        low *= width
    return total if accumulate else current


def bqm_energies(bqm: dimod.BinaryQuadraticModel) -> Tuple[np.ndarray, List]:
    """Diagonal of H_P for any BQM: (2^d,) energies by little-endian state index, and the labels.

    SPIN models are read in BINARY form (s = 2n − 1), so index bits are always 0/1 values.
    """
    binary = bqm.change_vartype(dimod.BINARY, inplace=False)
    labels = list(binary.variables)
    linear, (rows, cols, values), offset = binary.to_numpy_vectors(variable_order=labels)
    quadratic = np.zeros((len(labels), len(labels)))
    np.add.at(quadratic, (rows, cols), values)
    quadratic = quadratic + quadratic.T
    return all_energies(np.asarray(linear, dtype=np.float64), quadratic, float(offset)), labels


class AnnealingHamiltonian:
    """H(s) = A(s) H_D + B(s) H_P without ever forming a 2^d × 2^d matrix.

    Args:
        problem_energies: (2^d,) diagonal of H_P by state index.
        driver: ``"standard"`` (H_D = −Σσx) or ``"paper"`` (H_D = +(1/d)Σσx).
    """

    def __init__(self, problem_energies: np.ndarray, driver: str = "standard") -> None:
        energies = np.ascontiguousarray(problem_energies, dtype=np.float64).reshape(-1)
        num_qubits = int(energies.size).bit_length() - 1
        if energies.size < 2 or energies.size != 1 << num_qubits:
            raise ValueError(f"problem_energies must have 2^d entries with d >= 1, got {energies.size}")
        if driver not in DRIVERS:
            raise ValueError(f"driver must be one of {DRIVERS}, got {driver!r}")
        self.problem_energies = energies
        self.num_qubits = num_qubits
        self.driver = driver
        self.driver_coefficient = -1.0 if driver == "standard" else 1.0 / num_qubits

    @classmethod
    def from_qubo(cls, qubo, driver: str = "standard") -> "AnnealingHamiltonian":
        """From a :class:`captum_qubo.formulation.qubo.FeatureMapQubo` (variable p = bit p)."""
        return cls(all_energies(qubo.linear, qubo.quadratic, qubo.offset), driver)

    @property
    def dimension(self) -> int:
        return self.problem_energies.size

    def ground_manifold(self, rtol: float = 1e-9) -> np.ndarray:
        """State indices of every minimiser of H_P (the final ground manifold)."""
        energies = self.problem_energies
        scale = max(1.0, float(np.abs(energies).max()))
        return np.flatnonzero(energies <= energies.min() + rtol * scale)

    def initial_state(self) -> np.ndarray:
        """Ground state of H_D as a complex (2^d,) unit vector."""
        amplitude = 1.0 / np.sqrt(self.dimension)
        if self.driver_coefficient < 0:
            return np.full(self.dimension, amplitude, dtype=np.complex128)
        parity = _popcounts(self.num_qubits) & 1
        return (amplitude * (1.0 - 2.0 * parity)).astype(np.complex128)

    def apply_transverse_sum(self, vectors: np.ndarray) -> np.ndarray:
        """Σ_p σx_p · vectors for a (2^d,) vector or a (2^d, m) block of columns.

        On a block of k bits, Σ_{p in block} σx_p is the 2^k × 2^k matrix with ones where row
        and column differ in one bit; summing one matrix product per block is about twice as
        fast as a pass over the state per qubit.
        """
        return _over_bit_blocks(vectors, self.num_qubits, _single_flip_sum, accumulate=True)

    def hadamard_transform(self, vectors: np.ndarray) -> np.ndarray:
        """W · vectors with W = (H/√2)^⊗d, the change to the basis in which H_D is diagonal.

        W is symmetric and its own inverse; in that basis Σ_p σx_p is diag(d − 2·popcount(y)).
        """
        return _over_bit_blocks(vectors, self.num_qubits, _hadamard_power, accumulate=False)

    def driver_basis_diagonal(self) -> np.ndarray:
        """(2^d,) eigenvalues of H_D by Hadamard-basis index: c·(d − 2·popcount(y))."""
        return self.driver_coefficient * (self.num_qubits - 2.0 * _popcounts(self.num_qubits))

    def apply(self, a: float, b: float, vectors: np.ndarray) -> np.ndarray:
        """(a H_D + b H_P) · vectors for schedule values a = A(s), b = B(s); (2^d,) or (2^d, m)."""
        out = self.apply_transverse_sum(vectors)
        out *= a * self.driver_coefficient
        diagonal = b * self.problem_energies
        out += (diagonal if np.ndim(vectors) == 1 else diagonal[:, None]) * vectors
        return out

    def driver_propagator(self, theta: float, state: np.ndarray) -> np.ndarray:
        """exp(−iθ H_D) · state, exactly (H_D is a sum of commuting single-qubit terms).

        exp(−iθcΣσx) = ⊗_p exp(−iθcσx_p). We apply it to blocks of bits as a dense
        2^k × 2^k Kronecker power via one matrix product per block; each product writes its
        output with the handled bits moved to the top, so after all blocks (k's summing to d)
        the bit order is the original again. This is ~4× faster than one pass per qubit.
        """
        angle = theta * self.driver_coefficient
        blocks = _bit_blocks(self.num_qubits)
        # ⊗^k [[c, −is], [−is, c]] has entry c^(k−w) (−is)^w, w = popcount(row XOR column).
        kron_powers = {
            k: np.cos(angle) ** (k - _flip_counts(k)) * (-1j * np.sin(angle)) ** _flip_counts(k) for k in set(blocks)
        }
        out = state
        for k in blocks:
            out = np.matmul(kron_powers[k], out.reshape(-1, 1 << k).T).reshape(-1)
        return out

    def problem_propagator(self, theta: float, state: np.ndarray) -> np.ndarray:
        """exp(−iθ H_P) · state (elementwise phases)."""
        angle = theta * self.problem_energies
        phase = np.empty(self.dimension, dtype=np.complex128)
        phase.real = np.cos(angle)
        phase.imag = -np.sin(angle)
        phase *= state
        return phase
