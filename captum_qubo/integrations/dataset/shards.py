"""The on-disk shard format: one Parquet file of per-sample records plus one ``.npz`` of maps per written batch.

A shard ``<name>`` is ``<name>.npz`` (one (n, h, w) float32 array per method, n = the shard's readable samples)
and ``<name>.parquet`` (one row per sample, ``map_row`` pointing into the arrays; the npz's SHA-256 in the Parquet
metadata). Both are written to temporary names and renamed, the maps first: the Parquet file is the commit, so a
crash at any point leaves either a complete shard or files a reader never trusts (temporaries, an npz without its
Parquet, a Parquet whose npz is missing or differs). Readers (:func:`trusted_shards`) and the resume logic
(:func:`completed_ids`) only see complete shards; :func:`remove_untrusted` clears the rest before a rerun writes.

Names come from the shard's sample ids (``rank003-<sha1 of ids>``), so every process of a run, on any node, names
its shards without coordinating, and a rerun never overwrites a trusted shard (it only explains missing ids).

Columns: ``sample_id``, ``source``, ``label`` (-1: none), ``error`` (null, or why the image was skipped),
``target``, ``predicted``, ``probabilities``, ``base_score`` (softmax of the target), ``num_channels`` (of the
layer), ``map_row``; per method
``<m>_masked_score``, ``<m>_seconds`` and ``<m>_channels``; for the QUBO ``qubo_energy``, ``qubo_num_variables``,
``qubo_sampler``, ``qubo_{forward_backward,build,solve}_s``; for the CAMs ``<m>_weights`` (all channel weights).
"""
from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

SHARD_FOLDER = "shards"
_TEMPORARY = ".tmp-"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError("dataset shards are Parquet files and need pyarrow: pip install 'captum-qubo[dataset]'") \
            from error
    return pa, pq


def column_type(name: str):
    """The Arrow type of a record column, by its name (see the module docstring)."""
    pa, _ = _pyarrow()
    if name in ("sample_id", "source", "error") or name.endswith("_sampler"):
        return pa.string()
    if name in ("label", "target", "predicted", "map_row", "num_channels") or name.endswith("_num_variables"):
        return pa.int64()
    if name == "probabilities" or name.endswith("_weights"):
        return pa.list_(pa.float32())
    if name.endswith("_channels"):
        return pa.list_(pa.int64())
    return pa.float64()


def shard_name(rank: int, sample_ids: Sequence[str]) -> str:
    """``rank<r>-<hash>``: the same ids give the same name on every process and every run."""
    digest = hashlib.sha1("\n".join(sample_ids).encode()).hexdigest()[:16]
    return f"rank{rank:03d}-{digest}"


def _atomic_bytes(path: Path, payload: bytes) -> None:
    partial = path.with_name(f"{path.name}{_TEMPORARY}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(partial, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)  # atomic on POSIX: readers see the old name absent or the whole file


def write_shard(folder: Path, name: str, columns: Mapping[str, Sequence[Any]], maps: Mapping[str, np.ndarray]) -> Path:
    """Write one shard atomically (maps, then the Parquet commit); returns the Parquet path.

    Args:
        folder: the shard folder (created if missing).
        name: from :func:`shard_name`.
        columns: equal-length lists per column name.
        maps: per method an (n, h, w) array, n = the number of rows whose ``map_row`` is not None.
    """
    pa, pq = _pyarrow()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{method: np.ascontiguousarray(array, dtype=np.float32) for method, array in maps.items()})
    payload = buffer.getvalue()
    _atomic_bytes(folder / f"{name}.npz", payload)
    table = pa.table({key: pa.array(list(values), type=column_type(key)) for key, values in columns.items()})
    table = table.replace_schema_metadata({"maps": f"{name}.npz", "maps_sha256": hashlib.sha256(payload).hexdigest()})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    _atomic_bytes(folder / f"{name}.parquet", sink.getvalue())
    return folder / f"{name}.parquet"


@dataclass(frozen=True)
class ShardScan:
    """What a shard folder holds.

    Attributes:
        trusted: complete shards' Parquet paths, sorted by name.
        untrusted: files no reader may use (temporaries, orphaned maps, Parquet files without valid maps), with why.
    """

    trusted: Tuple[Path, ...]
    untrusted: Tuple[Tuple[Path, str], ...]


def scan_shards(folder: Path) -> ShardScan:
    """Sort a shard folder's files into complete shards and leftovers of interrupted writes."""
    _, pq = _pyarrow()
    folder = Path(folder)
    if not folder.is_dir():
        return ShardScan((), ())
    trusted, untrusted, claimed = [], [], set()
    for path in sorted(folder.iterdir()):
        if _TEMPORARY in path.name:
            untrusted.append((path, "temporary file of an interrupted write"))
        elif path.suffix == ".parquet":
            reason = _parquet_problem(pq, path)
            if reason is None:
                trusted.append(path)
                claimed.add(path.with_suffix(".npz").name)
            else:
                untrusted.append((path, reason))
    for path in sorted(folder.glob("*.npz")):
        if path.name not in claimed and _TEMPORARY not in path.name:
            untrusted.append((path, "maps without a committed Parquet file"))
    return ShardScan(tuple(trusted), tuple(untrusted))


def _parquet_problem(pq, path: Path):
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception as error:  # any Arrow error means the file cannot be trusted
        return f"unreadable Parquet ({type(error).__name__})"
    maps = path.with_name(metadata.get(b"maps", b"").decode())
    if not maps.name or not maps.is_file():
        return "its maps file is missing"
    if hashlib.sha256(maps.read_bytes()).hexdigest() != metadata.get(b"maps_sha256", b"").decode():
        return "its maps file does not match the checksum"
    return None


def remove_untrusted(folder: Path) -> List[Tuple[Path, str]]:
    """Delete the leftovers :func:`scan_shards` finds; returns what was removed and why (rank zero only)."""
    removed = []
    for path, reason in scan_shards(Path(folder)).untrusted:
        path.unlink(missing_ok=True)
        if path.suffix == ".parquet":
            path.with_suffix(".npz").unlink(missing_ok=True)
        removed.append((path, reason))
    return removed


def read_records(folder: Path, columns: Sequence[str] = None):
    """All trusted shards' records as one ``pyarrow.Table`` with a ``shard`` column (empty table if none)."""
    pa, pq = _pyarrow()
    tables = []
    for path in scan_shards(folder).trusted:
        table = pq.read_table(path, columns=list(columns) if columns else None)
        tables.append(table.append_column("shard", pa.array([path.stem] * len(table), type=pa.string())))
    if not tables:
        return pa.table({"sample_id": pa.array([], type=pa.string())})
    return pa.concat_tables(tables, promote_options="default")


def completed_ids(folder: Path) -> List[str]:
    """Sample ids already in trusted shards (explained or recorded as unreadable): what a rerun skips."""
    return read_records(folder, ["sample_id"]).column("sample_id").to_pylist()


def load_maps(folder: Path, method: str) -> Dict[str, np.ndarray]:
    """``{sample_id: (h, w) map}`` of one method over the trusted shards (readable samples only)."""
    maps: Dict[str, np.ndarray] = {}
    _, pq = _pyarrow()
    for path in scan_shards(Path(folder)).trusted:
        table = pq.read_table(path, columns=["sample_id", "map_row"])
        with np.load(path.with_suffix(".npz")) as arrays:
            if method not in arrays:
                raise ValueError(f"shard {path.name} has no maps for method {method!r}; it has {list(arrays)}")
            stack = arrays[method]
        for sample_id, row in zip(table.column("sample_id").to_pylist(), table.column("map_row").to_pylist()):
            if row is not None:
                maps[sample_id] = stack[row]
    return maps
