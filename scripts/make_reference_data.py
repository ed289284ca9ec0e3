"""Write the package's TNG300-1 and Bolshoi-Planck reference data files from the measured figures.

Usage: python scripts/make_reference_data.py SOURCE_DIR
SOURCE_DIR holds tng300/ and bolplanck_mocks/ as described in their PROVENANCE.md (in this project's
workspace: ../shared/data). Output: iaemu_theory/data/*.txt, read by iaemu_theory.tng300.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "iaemu_theory" / "data"
FILE_STAT = {"xi": "xi", "omega": "ed", "eta": "ee"}

CITATION = ("Van Alfen et al. 2024 (arXiv:2311.07374); Pandya et al. 2025 (arXiv:2504.05235); "
            "IllustrisTNG: Nelson et al. 2019 (arXiv:1812.05609)")
TNG_SOURCE = "duncandc/intrinsic_alignments (commit b90f4999), modelling_illustris/data/"
COV_SOURCE = "nvanalfen/HaloMCMC (commit 2f708221), illustris/"


def _read_dat(path: Path) -> np.ndarray:
    return np.loadtxt(path, skiprows=1)


def _write(name: str, header: str, table: np.ndarray) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    np.savetxt(OUT / name, table, header=header, fmt="%.10e")
    print(f"wrote {OUT / name}")


def _stat_table(folder: Path, pattern: str) -> tuple[np.ndarray, list[str]]:
    cols, names, r = [], ["r"], None
    for stat, tag in FILE_STAT.items():
        d = _read_dat(folder / pattern.format(tag))
        if r is None:
            r = d[:, 0]
        elif not np.allclose(r, d[:, 0]):
            raise ValueError(f"radial bins differ between files in {folder}")
        cols += [d[:, 1], d[:, 2]]
        names += [stat, f"{stat}_err"]
    return np.column_stack([r] + cols), names


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(__doc__)
    src = Path(argv[0])
    tng, ref = src / "tng300", src / "bolplanck_mocks"
    bins = "edges numpy.logspace(-1, 1.5, 15) Mpc/h, r = arithmetic mean of the edges"
    for sample in (1, 2, 3):
        table, names = _stat_table(tng, f"TNG300-1_99-sample_{sample}_{{}}.dat")
        _write(f"tng300_sample{sample}.txt",
               f"TNG300-1 snapshot 99 (z=0), stellar-mass threshold sample {sample}; Lbox 205 Mpc/h.\n"
               f"omega = halotools ed_3d, eta = ee_3d; err = sqrt(diag) of a 3x3x3 (27-subvolume) jackknife covariance.\n"
               f"Bins: {bins}.\nSource: {TNG_SOURCE}. Cite: {CITATION}.\n" + " ".join(names), table)
    cov = np.load(tng / "TNG300-1_99-sample_3_ed_cov.npy")
    _write("tng300_sample3_omega_cov.txt",
           "TNG300-1 sample 3 omega (ed_3d): full 14x14 jackknife covariance, 27 subvolumes (3x3x3).\n"
           f"Bins: {bins}.\nSource: {COV_SOURCE}. Cite: {CITATION}.", cov)
    for grid, n_sub in (("3x3x3", 27), ("5x5x5", 125)):
        value = np.load(tng / f"TNG300-1_99-sample_3_ed_19_{grid}.npy")
        cov19 = np.load(tng / f"TNG300-1_99-sample_3_ed_cov_19_{grid}.npy")
        edges = np.logspace(-1, 1.4, 20)
        r = 0.5 * (edges[1:] + edges[:-1])
        _write(f"tng300_sample3_omega19_jk{n_sub}.txt",
               f"TNG300-1 sample 3 omega (ed_3d) in 19 bins (edges numpy.logspace(-1, 1.4, 20), arithmetic centres),\n"
               f"with its full jackknife covariance from {n_sub} subvolumes ({grid}). Columns: r omega, then the 19x19 "
               f"covariance rows.\nSource: {COV_SOURCE}. Cite: {CITATION}.",
               np.column_stack([r, np.ravel(value), cov19]))
    table, names = _stat_table(ref, "TNG300-1_99-sample_2_model_{}.dat")
    _write("bolplanck_sample2_reference.txt",
           "halotools-IA mocks on the Bolshoi-Planck rockstar catalog (z=0, 250 Mpc/h) at TNG300 sample 2's best fit:\n"
           "logMmin 11.93 sigma_logM 0.26 logM0 12.05 logM1 12.85 alpha 1.0 mu_cen 0.64 mu_sat 0.084.\n"
           "Mean and std over 10 populations (no cosmic variance; xi err is 0).\n"
           f"Bins: {bins}.\nSource: {TNG_SOURCE}. Cite: {CITATION}.\n" + " ".join(names), table)


if __name__ == "__main__":
    main()
