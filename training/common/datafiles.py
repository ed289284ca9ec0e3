"""The shipped emulator's data files in the source repository (training/data), and their sha256 check.

training/data/MANIFEST.json is the one record of them: "files" maps each kept file (the current dataset and
the N-body catalogs; a box of training/data/boxes by its relative path "boxes/NAME") to its sha256, "retired"
names the earlier files that left the tree with the last commit holding each. A kept file loaded by its repository path is checked against its digest; any other path is used as given.
An installed package carries the manifest but not the data, which live in the source repository only.
"""
from __future__ import annotations

import json
from pathlib import Path

from training.common.fileio import sha256_file

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
MANIFEST = DATA_DIR / "MANIFEST.json"
#: The dataset the shipped emulator was trained on (training/configs/shipped.yaml).
SHIPPED_DATASET = "dataset_hires320x3.h5"

#: Digests already computed: resolved path -> ((size, mtime_ns), sha256).
_digests: dict[Path, tuple[tuple[int, int], str]] = {}


class DataFileError(ValueError):
    """A recorded data file whose content differs from its recorded sha256."""


def manifest() -> dict:
    """The manifest record ({"files": {name: sha256}, "retired": {name: {"commit", "sha256"}}})."""
    return json.loads(MANIFEST.read_text())


def recorded_files() -> dict[str, str]:
    """{file name: sha256} of the files kept in training/data."""
    return dict(manifest()["files"])


def retired_files() -> dict[str, dict]:
    """{file name: {"commit": ..., "sha256": ...}} of the files that left training/data."""
    return dict(manifest().get("retired", {}))


def restore_command(name: str, dest=None) -> str:
    """The `git show` command that restores a retired file (to `dest`, default its old repository path)."""
    commit = retired_files()[name]["commit"]
    return f"git show {commit}:training/data/{name} > {dest or f'training/data/{name}'}"


def _data_name(path: Path) -> str | None:
    """A path's name relative to training/data ("dataset.h5", "boxes/NAME"), or None outside it."""
    resolved = path.resolve()
    return resolved.relative_to(DATA_DIR).as_posix() if resolved.is_relative_to(DATA_DIR) else None


def _recorded_name(path: Path) -> str | None:
    """The manifest name of `path` when it is one of the recorded files at its repository path, else None."""
    try:
        name = _data_name(path)
    except OSError:
        return None
    if name is None or not MANIFEST.exists():
        return None
    return name if name in recorded_files() else None


def file_sha256(path) -> str:
    """sha256 of a file, hashed once while its size and modification time stay the same (a 50 MB dataset is
    checked on load and its digest recorded in the artifact: one read serves both)."""
    path = Path(path)
    st = path.stat()
    stamp, key = (st.st_size, st.st_mtime_ns), path.resolve()
    cached = _digests.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    digest = sha256_file(path)
    _digests[key] = (stamp, digest)
    return digest


def check_file(path) -> str | None:
    """Check a file loaded by the project: when it is a recorded file at its repository path, its sha256 must be the
    recorded one (DataFileError naming the file and both digests). Returns the recorded digest, or None for any
    other path (not checked). A file unchanged since it was last hashed (same size and mtime) is not hashed again."""
    path = Path(path)
    name = _recorded_name(path)
    if name is None:
        return None
    expected = recorded_files()[name]
    actual = file_sha256(path)
    if actual != expected:
        raise DataFileError(
            f"{path}: sha256 {actual} differs from the recorded {expected} (training/data/MANIFEST.json). The file "
            f"was changed or damaged; restore it with `git checkout -- training/data/{name}`, or load a modified "
            f"copy from another path")
    return expected


def missing_hint(path) -> str:
    """Why a data file at `path` may be absent and how to get it: for a recorded or retired file name, where it
    lives; '' for other files."""
    path = Path(path)
    try:
        name = _data_name(path) or path.name
        recorded, retired = recorded_files(), retired_files()
    except (OSError, ValueError):
        return ""
    if name in recorded:
        return (f"; {name} is kept in the source repository at training/data/{name}, not in the installed package: "
                f"use it from a clone of the repository (or copy it from there), or regenerate it "
                f"(iaemu-generate / iaemu-catalog build)")
    if name in retired:
        return (f"; {name} was retired from the repository; restore it from the repository root with "
                f"`{restore_command(name)}`")
    return ""


def repository_file(name: str) -> Path:
    """Path of a recorded file in training/data; FileNotFoundError saying where it lives when it is absent (as in an
    installed package)."""
    if name not in recorded_files():
        raise KeyError(f"{name!r} is not a recorded data file; recorded: {sorted(recorded_files())}")
    path = DATA_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist{missing_hint(path)}")
    return path


def shipped_dataset() -> Path:
    """The shipped emulator's training dataset (training/data/dataset_hires320x3.h5 in the source repository)."""
    return repository_file(SHIPPED_DATASET)


__all__ = ["DATA_DIR", "MANIFEST", "SHIPPED_DATASET", "DataFileError", "check_file", "manifest",
           "missing_hint", "recorded_files", "repository_file", "restore_command", "retired_files",
           "shipped_dataset"]
