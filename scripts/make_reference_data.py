"""Write the package's TNG300-1 and Bolshoi-Planck reference data files from the measured figures.

Usage: python scripts/make_reference_data.py SOURCE_DIR
SOURCE_DIR holds tng300/, bolplanck_mocks/ and smdpl_halo_alignments/ as described in their PROVENANCE.md (in this
project's workspace: ../shared/data). Output: iaemu_theory/data/*.txt, read by iaemu_theory.tng300, and
training/data/smdpl_halo_alignments.txt, the dark-matter reference of the halo-halo alignments
(scripts/halo_alignment_resolution.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "iaemu_theory" / "data"
TRAINING_OUT = ROOT / "training" / "data"
FILE_STAT = {"xi": "xi", "omega": "ed", "eta": "ee"}

CITATION = ("Van Alfen et al. 2024 (arXiv:2311.07374); Pandya et al. 2025 (arXiv:2504.05235); "
            "IllustrisTNG: Nelson et al. 2019 (arXiv:1812.05609)")
TNG_SOURCE = "duncandc/intrinsic_alignments (commit b90f4999), modelling_illustris/data/"
COV_SOURCE = "nvanalfen/HaloMCMC (commit 2f708221), illustris/"


def _read_dat(path: Path) -> np.ndarray:
    return np.loadtxt(path, skiprows=1)


def _write(name: str, header: str, table: np.ndarray, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savetxt(out / name, table, header=header, fmt="%.10e")
    print(f"wrote {out / name}")


SMDPL_SOURCE = "duncandc/intrinsic_alignments (commit 94ddcfb3), halo_shape_correlations/data/"
SMDPL_CITATION = "SMDPL: Klypin et al. 2016 (arXiv:1411.4001); Van Alfen et al. 2024 (arXiv:2311.07374)"


def smdpl_table(folder: Path) -> np.ndarray:
    """SMDPL halo-halo ed and ee (halo_mpeak >= 1e12) with their jackknife covariances, as one table:
    columns r ed ed_err ee ee_err, then the 28 rows of the ed covariance, then those of the ee covariance."""
    cols, covs, r = [], [], None
    for stat in ("ed", "ee"):
        d = np.loadtxt(folder / f"smdpl_halos_mpeak1e12_{stat}.txt")
        cov = np.loadtxt(folder / f"smdpl_halos_mpeak1e12_{stat}_cov.txt")
        if d.shape != (28, 3) or cov.shape != (28, 28):
            raise ValueError(f"{folder}: {stat} has shapes {d.shape}, {cov.shape}; expected (28, 3) and (28, 28)")
        if r is None:
            r = d[:, 0]
        elif not np.allclose(r, d[:, 0]):
            raise ValueError(f"radial bins differ between the ed and ee files in {folder}")
        if not np.allclose(d[:, 2], np.sqrt(np.diag(cov)), rtol=1e-3):
            raise ValueError(f"{folder}: the {stat} err column is not sqrt(diag) of its covariance")
        cols += [d[:, 1], d[:, 2]]
        covs.append(cov)
    return np.column_stack([r] + cols + covs)


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
    _write("smdpl_halo_alignments.txt",
           "SMDPL dark-matter halos (400 Mpc/h, 3840^3 particles, Planck, Rockstar; z=0), halo_mpeak >= 1e12 Msun/h:\n"
           "halo-halo ed (halotools ed_3d) and ee (ee_3d) of the halo finder's major axes.\n"
           "Bins: edges numpy.logspace(-1, 1.8, 29) Mpc/h, r = arithmetic mean of the edges; err = sqrt(diag) of the\n"
           "jackknife covariance (4x4x4 = 64 subvolumes). Columns: r ed ed_err ee ee_err, then the 28 rows of the ed\n"
           "covariance (28 columns), then the 28 of the ee covariance.\n"
           f"Source: {SMDPL_SOURCE}. Cite: {SMDPL_CITATION}.",
           smdpl_table(src / "smdpl_halo_alignments"), TRAINING_OUT)


if __name__ == "__main__":
    main()
