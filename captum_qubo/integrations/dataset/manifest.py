"""An output folder's identity and record: the configuration that made its shards, and what the runs did.

``manifest.json`` holds the ``configuration`` (format, model fingerprint, explainer settings, data source), the
``runs`` so far, and after each run the shard list, the skipped (unreadable) samples and whether every sample of
the source is done. A rerun into the same folder must have the same configuration, else it is refused with the
differing settings named (mixing shards of two configurations would make a report that describes neither).
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch.nn import Module

FORMAT = "captum-qubo-dataset/1"
MANIFEST = "manifest.json"


class OutputFolderMismatch(ValueError):
    """The output folder holds shards of another configuration (or is not a dataset output folder)."""


def model_fingerprint(model: Module) -> Dict[str, Any]:
    """The model's class and a SHA-256 of its state dict (parameters and buffers, names, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}", "state_sha256": digest.hexdigest()}


def configuration(model: Module, explain: Dict[str, Any], source: Dict[str, Any]) -> Dict[str, Any]:
    """The configuration an output folder is bound to."""
    return {"format": FORMAT, "model": model_fingerprint(model), "explain": explain, "source": source}


def read_manifest(out: Path) -> Optional[Dict[str, Any]]:
    """The folder's manifest, or None when there is none."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise OutputFolderMismatch(f"{path} is not valid JSON ({error.msg}); it was not written by this tool, or "
                                   "was edited. Use another output folder") from None


def check_output_folder(out: Path, config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Refuse a folder whose shards come from another configuration; returns its manifest (None if new).

    Raises:
        OutputFolderMismatch: the folder is a file, is a non-empty folder without a manifest, or its manifest's
            configuration differs (the differing settings are named).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderMismatch(f"output folder {str(out)!r} is a file; choose a folder")
    manifest = read_manifest(out)
    if manifest is None:
        if out.is_dir() and any(out.iterdir()):
            raise OutputFolderMismatch(f"output folder {str(out)!r} is not empty and has no {MANIFEST}, so it is not "
                                       "a dataset run to resume; choose an empty or new folder")
        return None
    differences = _differences(manifest.get("configuration", {}), config)
    if differences:
        shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
        raise OutputFolderMismatch(
            f"output folder {str(out)!r} holds shards of a different configuration ({shown}). Its shards "
            "cannot be resumed with these settings: rerun with the same settings, or choose a new output folder")
    return manifest


def _differences(old: Any, new: Any, path: str = "") -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return found
    if old != new:
        return [f"{path}: {_short(new)} now, {_short(old)} in the folder"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def write_manifest(out: Path, manifest: Dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temporary name, then rename)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{MANIFEST}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(partial, out / MANIFEST)
