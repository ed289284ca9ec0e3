"""The fused measurement engine: xi, omega and eta of a galaxy catalogue in one pass over pairs.

halotools measures the three statistics with three calls (`tpcf`, `ed_3d`, `ee_3d`) that count the
same DD pairs four times.  Here one numba-compiled pass over z-sorted columns of galaxies accumulates,
per radial bin, the pair count, the ellipticity-direction sum and the ellipticity-ellipticity sum
(docs/engine.md says what makes it fast).

Conventions (identical to halotools 0.9.4, all galaxies as both samples):

- a pair (i, j), i != j, falls in bin k when ``rbins[k] < |r_ij| <= rbins[k+1]`` (squared
  distances compared, minimum-image separation in a periodic box);
- ``DD[k]`` counts ordered pairs (each unordered pair twice), as ``npairs_3d(s, s, rbins)``;
- ``xi = DD / RR - 1`` with the analytic ``RR = N**2 * dV_k / V`` (`tpcf`, natural estimator,
  no randoms, N**2 and not N(N-1));
- ``omega = sum_ordered (e_i . r_hat_ij)**2 / DD - 1/3``  (`ed_3d(s, e, s, rbins)`);
- ``eta = sum_ordered (e_i . e_j)**2 / DD - 1/3``  (`ee_3d(s, e, s, e, rbins)`);
- orientations are normalised; a zero-length orientation is an error (as in halotools).

Deviation, on purpose: a bin with no pairs gives NaN for all three statistics (halotools gives
xi = -1 and omega = eta = NaN there) and is flagged in `Correlations.empty_bins`.

For extra orientation draws on fixed positions, `PairGeometry` computes once the pair counts, xi,
the per-galaxy per-bin tensors ``T_ik = sum_{j in bin k} r_hat r_hat^T`` (so that omega for new
orientations is ``sum_i e_i^T T_ik e_i``, O(N * bins)) and a compact list of the pairs (for eta).
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import njit

from iaemu_theory.conventions import BIN_EDGES, STATISTICS

__all__ = ["Correlations", "PairGeometry", "measure_correlations"]

#: Work is split into this many interleaved groups of cells, each with its own accumulators.
#: Fixed (not tied to the thread count) so results are bit-identical for any number of threads.
_N_CHUNKS = 64


@dataclass(frozen=True, eq=False)
class Correlations:
    """xi, omega, eta per radial bin, with the ordered pair counts DD behind them.

    ``n_pairs[k]`` is halotools' DD (ordered pairs, i != j).  Bins without pairs are NaN in all three
    statistics and True in `empty_bins`; fewer than 2 galaxies gives NaN everywhere.
    """

    xi: np.ndarray
    omega: np.ndarray
    eta: np.ndarray
    n_pairs: np.ndarray
    rbins: np.ndarray = field(repr=False)
    n_galaxies: int = 0

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in STATISTICS:
            raise KeyError(f"unknown statistic {name!r}; expected one of {list(STATISTICS)}")
        return getattr(self, name)

    def as_array(self) -> np.ndarray:
        """The three statistics stacked as (3, n_bins) in STATISTICS order."""
        return np.stack([getattr(self, name) for name in STATISTICS])

    @property
    def empty_bins(self) -> np.ndarray:
        """Bins with no pairs (their statistics are NaN)."""
        return self.n_pairs == 0

    @property
    def ok(self) -> bool:
        """True when every statistic in every bin is finite."""
        return bool(np.all(np.isfinite(self.as_array())))


# --------------------------------------------------------------------------------------------
# input checks


def _check_rbins(rbins) -> np.ndarray:
    rbins = np.asarray(rbins, dtype=np.float64)
    if rbins.ndim != 1 or rbins.size < 2:
        raise ValueError(f"rbins must be a 1-D array of at least 2 edges, got shape {rbins.shape}")
    if not np.all(np.isfinite(rbins)) or np.any(rbins <= 0) or np.any(np.diff(rbins) <= 0):
        raise ValueError(f"rbins must be finite, strictly positive and strictly increasing, got {rbins}")
    return rbins


def _check_period(period, rmax: float):
    """Return (period as a length-3 float64 array, periodic flag)."""
    if period is None:
        return np.zeros(3), False
    arr = np.atleast_1d(np.asarray(period, dtype=np.float64))
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"period must be a positive finite scalar or length-3 sequence (or None), got {period!r}")
    if np.any(rmax >= arr / 3.0):
        raise ValueError(
            f"the largest bin edge {rmax:g} must be below period/3 = {arr.min() / 3.0:g} "
            "(the same limit halotools imposes; the cell list needs at least 3 cells per side)"
        )
    return arr, True


def _check_positions(positions, period: np.ndarray, periodic: bool) -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {pos.shape}")
    bad = ~np.all(np.isfinite(pos), axis=1)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"positions[{i}] = {pos[i]} is not finite")
    if periodic:
        outside = np.any((pos < 0) | (pos > period), axis=1)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(f"positions[{i}] = {pos[i]} lies outside the periodic box [0, {period}]")
        pos = np.where(pos == period, 0.0, pos)
    return np.ascontiguousarray(pos)


def _check_orientations(orientations, n: int) -> np.ndarray:
    ori = np.asarray(orientations, dtype=np.float64)
    if ori.shape != (n, 3):
        raise ValueError(f"orientations must have shape ({n}, 3) like the positions, got {ori.shape}")
    norm = np.sqrt(np.sum(ori * ori, axis=1))
    bad = ~np.isfinite(norm) | (norm == 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"orientations[{i}] = {ori[i]} has zero or non-finite length; every galaxy needs a major-axis direction"
        )
    return np.ascontiguousarray(ori / norm[:, None])


def _resolve_threads(num_threads) -> int:
    """Threads for one call: `num_threads`, or numba's current default (NUMBA_NUM_THREADS) if None."""
    if num_threads is None:
        return numba.get_num_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads={num_threads!r} must be a positive integer (or None for numba's default)")
    return int(num_threads)


# --------------------------------------------------------------------------------------------
# cell list (PairGeometry) and columns (measure_correlations)


@dataclass(frozen=True)
class _Cells:
    order: np.ndarray  # galaxy index of each sorted slot
    pos: np.ndarray  # (N, 3) positions in cell order
    start: np.ndarray  # (n_cells + 1,) first sorted slot of each cell
    ncell: np.ndarray  # (3,) cells per side
    period: np.ndarray  # (3,) box sides (zeros if not periodic)
    periodic: bool


def _grid_extent(pos: np.ndarray, period: np.ndarray, periodic: bool, rmax: float):
    """Origin and side lengths of the grid a cell or column index is taken on: the box when periodic, else the
    galaxies' bounding box (at least rmax on a side)."""
    if periodic:
        return np.zeros(3), period
    lo = pos.min(axis=0)
    return lo, np.maximum(pos.max(axis=0) - lo, rmax)


def _build_cells(pos: np.ndarray, period: np.ndarray, periodic: bool, rmax: float) -> _Cells:
    """Sort galaxies into a grid of cells at least `rmax` wide (so pairs lie in neighbouring cells)."""
    lo, extent = _grid_extent(pos, period, periodic, rmax)
    # cap the grid so the cell array stays small for tiny rmax
    ncell = np.clip(np.floor(extent / rmax), 1, 128).astype(np.int64)
    idx3 = np.floor((pos - lo) / extent * ncell).astype(np.int64)
    idx3 = np.clip(idx3, 0, ncell - 1)
    cell = (idx3[:, 0] * ncell[1] + idx3[:, 1]) * ncell[2] + idx3[:, 2]
    order = np.argsort(cell, kind="stable")
    counts = np.bincount(cell, minlength=int(np.prod(ncell)))
    start = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    return _Cells(order, np.ascontiguousarray(pos[order]), start, ncell, period, periodic)


@dataclass(frozen=True)
class _Columns:
    order: np.ndarray  # galaxy index of each sorted slot
    pos: np.ndarray  # (3, N) x, y, z rows in slot order
    start: np.ndarray  # (n_columns + 1,) first slot of each column
    ncol: np.ndarray  # (2,) columns along x and y
    lo: np.ndarray  # (3,) grid origin
    width: np.ndarray  # (2,) column widths along x and y


#: Columns are at least rmax / _REACH wide, so pairs lie within _REACH columns of each other.
_REACH = 2
#: Entries of the table that turns a squared separation into a first guess of its bin.
_BIN_TABLE_SIZE = 2048


def _build_columns(pos: np.ndarray, period: np.ndarray, periodic: bool, rmax: float) -> _Columns:
    """Sort galaxies into x-y columns at least rmax / _REACH wide, each column sorted by z."""
    lo, extent = _grid_extent(pos, period, periodic, rmax)
    # at most 256 x 256 columns, so a column index fits in 16 bits (and the start array stays small)
    ncol = np.clip(np.floor(extent[:2] / (rmax / _REACH)), 1, 256).astype(np.int64)
    idx2 = np.clip(np.floor((pos[:, :2] - lo[:2]) / extent[:2] * ncol).astype(np.int64), 0, ncol - 1)
    col = (idx2[:, 0] * ncol[1] + idx2[:, 1]).astype(np.uint16)
    by_z = np.argsort(pos[:, 2])
    order = by_z[np.argsort(col[by_z], kind="stable")]
    start = np.zeros(int(np.prod(ncol)) + 1, dtype=np.int64)
    np.cumsum(np.bincount(col, minlength=start.size - 1), out=start[1:])
    return _Columns(order, np.take(pos.T, order, axis=1), start, ncol, lo, extent[:2] / ncol)


def _bin_table(rbins_sq: np.ndarray):
    """(table, scale): ``table[int(d2 * scale)]`` is a lower bound on the bin of d2 in (rbins_sq[0], rbins_sq[-1]].

    Entry e counts the inner edges whose own entry is below e; those edges are certainly below d2 (the
    same float product, monotone in d2), so the kernel only steps the guess up to the exact bin.
    """
    scale = _BIN_TABLE_SIZE / rbins_sq[-1]
    edge_entry = (rbins_sq[1:-1] * scale).astype(np.int64)
    table = np.searchsorted(edge_entry, np.arange(_BIN_TABLE_SIZE + 2), side="left").astype(np.int32)
    return table, scale


# --------------------------------------------------------------------------------------------
# compiled kernels


@njit(cache=True, inline="always")
def _find_bin(d2, rbins_sq):
    """Bin k with rbins_sq[k] < d2 <= rbins_sq[k+1], or -1 (halotools' inclusive upper edge)."""
    nb = rbins_sq.size - 1
    if d2 <= rbins_sq[0] or d2 > rbins_sq[nb]:
        return -1
    lo = 0
    hi = nb
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if d2 <= rbins_sq[mid]:
            hi = mid
        else:
            lo = mid
    return lo


@njit(cache=True, inline="always")
def _neighbour(c, dc, n, box, periodic):
    """Neighbouring cell along one axis and the shift of its periodic image: (index, shift).

    Index -1 means outside a non-periodic grid.  A galaxy at x in the neighbour sits at x + shift as
    seen from cell c; cells are at least rmax wide and rmax < box/3, so this is the minimum image.
    """
    m = c + dc
    shift = 0.0
    if periodic:
        if m < 0:
            m += n
            shift = -box
        elif m >= n:
            m -= n
            shift = box
    elif m < 0 or m >= n:
        m = -1
    return m, shift


@njit(cache=True, inline="always", error_model="numpy")
def _window(pos, ori, ja, jb, xs, ys, zs, ei, rbins_sq, table, scale, slot, d2_buf, cnt, so, se):
    """Pairs of one galaxy (at xs, ys, zs in the frame of slots ja..jb-1, orientation ei) with slots ja..jb-1.

    Three passes: squared separations (a branch-free loop the compiler vectorises), the slots in
    (rmin, rmax] gathered without branches, then bin and sums for those pairs only.  Each pair adds
    (e_i.r)^2/r^2 + (e_j.r)^2/r^2 and (e_i.e_j)^2; sums alternate between two accumulator rows to
    shorten the dependency chains on the per-bin sums.
    """
    nb = rbins_sq.size - 1
    rmin2, rmax2 = rbins_sq[0], rbins_sq[nb]
    x, y, z = pos[0, ja:jb], pos[1, ja:jb], pos[2, ja:jb]
    n = jb - ja
    for t in range(n):
        rx = x[t] - xs
        ry = y[t] - ys
        rz = z[t] - zs
        d2_buf[t] = rx * rx + ry * ry + rz * rz
    m = 0
    for t in range(n):
        d2 = d2_buf[t]
        slot[m] = t
        m += (d2 <= rmax2) & (d2 > rmin2)
    ex, ey, ez = ori[0, ja:jb], ori[1, ja:jb], ori[2, ja:jb]
    exi, eyi, ezi = ei
    for q in range(m):
        t = slot[q]
        d2 = d2_buf[t]
        k = table[int(d2 * scale)]
        while d2 > rbins_sq[k + 1]:
            k += 1
        k += (q & 1) * (nb + 1)
        rx = x[t] - xs
        ry = y[t] - ys
        rz = z[t] - zs
        exj, eyj, ezj = ex[t], ey[t], ez[t]
        ci = exi * rx + eyi * ry + ezi * rz
        cj = exj * rx + eyj * ry + ezj * rz
        cij = exi * exj + eyi * eyj + ezi * ezj
        cnt[k] += 1
        so[k] += (ci * ci + cj * cj) / d2
        se[k] += cij * cij


@njit(cache=True, nogil=True, error_model="numpy")
def _fused_chunk(pos, ori, start, ncol, lo, width, period, periodic, rbins_sq, table, scale, chunk, n_chunks,
                 counts, s_omega, s_eta):
    """Unordered pairs whose first galaxy lies in the chunk's columns (c = chunk, chunk + n_chunks, ...).

    For each neighbouring column m >= c (within _REACH columns along x and y), the partners of galaxy
    i are the z-window of m within h of z_i, h = sqrt(rmax^2 - g^2) for the gap g between the two
    columns (plus the images across the z boundary of a periodic box); columns are z-sorted and the
    windows move monotonically with z_i, so four pointers find them.  Within column c only j > i.
    Adds per bin: the pair count, (e_i.r)^2 + (e_j.r)^2 over r^2 and (e_i.e_j)^2, into row `chunk`.
    """
    nx, ny = ncol[0], ncol[1]
    nb = rbins_sq.size - 1
    # margins far above rounding, so no pair within rmax is cut (the exact test is on d2)
    pad = 1e-9 * (width[0] + width[1])
    rlim2 = rbins_sq[nb] * (1.0 + 1e-12) + pad
    lz = period[2]
    longest = max(1, int(np.max(start[1:] - start[:-1])))
    slot = np.empty(longest, dtype=np.uint64)
    d2_buf = np.empty(longest)
    cnt = np.zeros(2 * (nb + 1), dtype=np.int64)
    so = np.zeros(2 * (nb + 1))
    se = np.zeros(2 * (nb + 1))
    for c in range(chunk, nx * ny, n_chunks):
        i0, i1 = start[c], start[c + 1]
        if i0 == i1:
            continue
        cx = c // ny
        cy = c % ny
        cx0 = lo[0] + cx * width[0]
        cy0 = lo[1] + cy * width[1]
        for dx in range(-_REACH, _REACH + 1):
            mx, sx = _neighbour(cx, dx, nx, period[0], periodic)
            if mx < 0:
                continue
            mx0 = lo[0] + mx * width[0] + sx
            gx = max(max(mx0 - (cx0 + width[0]), cx0 - (mx0 + width[0])) - pad, 0.0)
            for dy in range(-_REACH, _REACH + 1):
                my, sy = _neighbour(cy, dy, ny, period[1], periodic)
                if my < 0:
                    continue
                m = mx * ny + my
                if m < c:
                    continue  # each column pair once (neighbours are distinct with >= 2 * _REACH + 1 per side)
                j0, j1 = start[m], start[m + 1]
                if j0 == j1:
                    continue
                my0 = lo[1] + my * width[1] + sy
                gy = max(max(my0 - (cy0 + width[1]), cy0 - (my0 + width[1])) - pad, 0.0)
                g2 = gx * gx + gy * gy
                if g2 >= rlim2:
                    continue
                h = math.sqrt(rlim2 - g2) + pad
                p_lo = p_hi = p_top = p_bottom = j0
                for i in range(i0, i1):
                    xs, ys, zi = pos[0, i] - sx, pos[1, i] - sy, pos[2, i]
                    ei = (ori[0, i], ori[1, i], ori[2, i])
                    if m == c:
                        p_lo = i + 1
                    else:
                        while p_lo < j1 and pos[2, p_lo] < zi - h:
                            p_lo += 1
                    p_hi = max(p_hi, p_lo)
                    while p_hi < j1 and pos[2, p_hi] <= zi + h:
                        p_hi += 1
                    _window(pos, ori, p_lo, p_hi, xs, ys, zi, ei, rbins_sq, table, scale, slot, d2_buf, cnt, so, se)
                    if not periodic:
                        continue
                    if zi < h:  # partners near the top of the box, seen at z - lz
                        p_top = max(p_top, p_hi)
                        while p_top < j1 and pos[2, p_top] < zi - h + lz:
                            p_top += 1
                        _window(pos, ori, p_top, j1, xs, ys, zi + lz, ei, rbins_sq, table, scale, slot, d2_buf,
                                cnt, so, se)
                    if zi + h > lz and m != c:  # partners near the bottom, seen at z + lz
                        while p_bottom < p_lo and pos[2, p_bottom] <= zi + h - lz:
                            p_bottom += 1
                        _window(pos, ori, j0, p_bottom, xs, ys, zi - lz, ei, rbins_sq, table, scale, slot,
                                d2_buf, cnt, so, se)
    for k in range(nb):
        counts[chunk, k] += cnt[k] + cnt[nb + 1 + k]
        s_omega[chunk, k] += so[k] + so[nb + 1 + k]
        s_eta[chunk, k] += se[k] + se[nb + 1 + k]


@njit(cache=True, nogil=True)
def _geometry_chunk(pos, start, ncell, period, periodic, rbins_sq, chunk, n_chunks, fill, offsets,
                    pair_j, pair_k, tensor, n_upper):
    """Pair geometry for the galaxies i in the chunk's cells (only rows i are written: no races).

    Without `fill`: tensor[i, k] += r_hat r_hat^T (xx, yy, zz, xy, xz, yz) over all partners j != i,
    and n_upper[i] = number of partners j > i (sorted order).  With `fill`: writes those partners
    j > i and their bins into pair_j / pair_k from offsets[i].
    """
    nx, ny, nz = ncell[0], ncell[1], ncell[2]
    n_cells = nx * ny * nz
    for c in range(chunk, n_cells, n_chunks):
        i0, i1 = start[c], start[c + 1]
        if i0 == i1:
            continue
        cx = c // (ny * nz)
        cy = (c // nz) % ny
        cz = c % nz
        for i in range(i0, i1):
            xi, yi, zi = pos[i, 0], pos[i, 1], pos[i, 2]
            w = offsets[i] if fill else 0
            for dx in range(-1, 2):
                mx, sx = _neighbour(cx, dx, nx, period[0], periodic)
                if mx < 0:
                    continue
                for dy in range(-1, 2):
                    my, sy = _neighbour(cy, dy, ny, period[1], periodic)
                    if my < 0:
                        continue
                    for dz in range(-1, 2):
                        mz, sz = _neighbour(cz, dz, nz, period[2], periodic)
                        if mz < 0:
                            continue
                        m = (mx * ny + my) * nz + mz
                        if fill and m < c:
                            continue  # cells before c hold only j < i (galaxies are sorted by cell)
                        j0 = i + 1 if (fill and m == c) else start[m]
                        for j in range(j0, start[m + 1]):
                            if j == i:
                                continue
                            rx = pos[j, 0] - (xi - sx)
                            ry = pos[j, 1] - (yi - sy)
                            rz = pos[j, 2] - (zi - sz)
                            d2 = rx * rx + ry * ry + rz * rz
                            k = _find_bin(d2, rbins_sq)
                            if k < 0:
                                continue
                            if fill:
                                pair_j[w] = j
                                pair_k[w] = k
                                w += 1
                                continue
                            if j > i:
                                n_upper[i] += 1
                            inv2 = 1.0 / d2
                            tensor[i, k, 0] += rx * rx * inv2
                            tensor[i, k, 1] += ry * ry * inv2
                            tensor[i, k, 2] += rz * rz * inv2
                            tensor[i, k, 3] += rx * ry * inv2
                            tensor[i, k, 4] += rx * rz * inv2
                            tensor[i, k, 5] += ry * rz * inv2


@njit(cache=True, nogil=True)
def _orientation_chunk(ori, tensor, offsets, pair_j, pair_k, chunk, n_chunks, s_omega, s_eta):
    """For galaxies i = chunk, chunk + n_chunks, ...: per-bin sums of e_i^T T_ik e_i (omega, all
    partners) and of (e_i.e_j)^2 over the stored partners j > i (eta), into row `chunk`."""
    nb = tensor.shape[1]
    so = s_omega[chunk]
    se = s_eta[chunk]
    for i in range(chunk, ori.shape[0], n_chunks):
        ex, ey, ez = ori[i, 0], ori[i, 1], ori[i, 2]
        xx, yy, zz = ex * ex, ey * ey, ez * ez
        xy, xz, yz = 2.0 * ex * ey, 2.0 * ex * ez, 2.0 * ey * ez
        for k in range(nb):
            so[k] += (xx * tensor[i, k, 0] + yy * tensor[i, k, 1] + zz * tensor[i, k, 2]
                      + xy * tensor[i, k, 3] + xz * tensor[i, k, 4] + yz * tensor[i, k, 5])
        for p in range(offsets[i], offsets[i + 1]):
            j = pair_j[p]
            cij = ex * ori[j, 0] + ey * ori[j, 1] + ez * ori[j, 2]
            se[pair_k[p]] += cij * cij


def _run_chunks(kernel, args_before, args_after, num_threads):
    """Call kernel(*args_before, chunk, _N_CHUNKS, *args_after) for every chunk on `num_threads` threads.

    The kernels release the GIL, so a plain thread pool runs them in parallel; each chunk writes
    only its own rows, and the chunk layout does not depend on the thread count (deterministic sums).
    """
    if num_threads == 1:
        for chunk in range(_N_CHUNKS):
            kernel(*args_before, chunk, _N_CHUNKS, *args_after)
        return
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        futures = [pool.submit(kernel, *args_before, chunk, _N_CHUNKS, *args_after) for chunk in range(_N_CHUNKS)]
        for future in futures:
            future.result()


# --------------------------------------------------------------------------------------------
# statistics from the sums


def _xi(dd: np.ndarray, n: int, rbins: np.ndarray, period: np.ndarray, periodic: bool) -> np.ndarray:
    """Natural estimator with halotools' analytic randoms RR = N^2 dV / V (NaN without a period)."""
    if not periodic:
        return np.full(dd.size, np.nan)
    shell = np.diff(4.0 / 3.0 * np.pi * rbins**3)
    rr = float(n) ** 2 * shell / float(np.prod(period))
    return dd / rr - 1.0


def _assemble(dd, s_omega, s_eta, n, rbins, period, periodic) -> Correlations:
    dd = np.asarray(dd, dtype=np.int64)
    empty = dd == 0
    safe = np.where(empty, 1, dd).astype(np.float64)
    xi = _xi(dd, n, rbins, period, periodic)
    omega = s_omega / safe - 1.0 / 3.0
    eta = s_eta / safe - 1.0 / 3.0
    for arr in (xi, omega, eta):
        arr[empty] = np.nan
    return Correlations(xi=xi, omega=omega, eta=eta, n_pairs=dd, rbins=rbins, n_galaxies=int(n))


def _all_nan(n: int, rbins: np.ndarray) -> Correlations:
    nb = rbins.size - 1
    nan = np.full(nb, np.nan)
    return Correlations(nan, nan.copy(), nan.copy(), np.zeros(nb, dtype=np.int64), rbins, int(n))


def _warn_no_xi():
    warnings.warn(
        "period=None: omega and eta are measured without periodic boundaries; xi is NaN "
        "(halotools' tpcf needs randoms when there is no period, which this engine does not take)",
        stacklevel=3,
    )


# --------------------------------------------------------------------------------------------
# public API


def measure_correlations(positions, orientations, period, rbins=BIN_EDGES, *, num_threads=None) -> Correlations:
    """xi, omega and eta of a galaxy catalogue, as halotools' tpcf, ed_3d and ee_3d on all galaxies.

    positions: (N, 3) in Mpc/h inside [0, period]; orientations: (N, 3) major axes (normalised here);
    period: box side (scalar or length 3), or None for a non-periodic catalogue (then xi is NaN);
    num_threads: threads for this call (None: numba's default, i.e. NUMBA_NUM_THREADS).
    """
    rbins = _check_rbins(rbins)
    period_arr, periodic = _check_period(period, rbins[-1])
    pos = _check_positions(positions, period_arr, periodic)
    ori = _check_orientations(orientations, pos.shape[0])
    threads = _resolve_threads(num_threads)
    if not periodic:
        _warn_no_xi()
    n = pos.shape[0]
    if n < 2:
        return _all_nan(n, rbins)
    nb = rbins.size - 1
    cols = _build_columns(pos, period_arr, periodic, rbins[-1])
    rbins_sq = rbins**2
    table, scale = _bin_table(rbins_sq)
    counts = np.zeros((_N_CHUNKS, nb), dtype=np.int64)
    s_omega = np.zeros((_N_CHUNKS, nb))
    s_eta = np.zeros((_N_CHUNKS, nb))
    _run_chunks(
        _fused_chunk,
        (cols.pos, np.take(ori.T, cols.order, axis=1), cols.start, cols.ncol, cols.lo, cols.width, period_arr,
         periodic, rbins_sq, table, scale),
        (counts, s_omega, s_eta),
        threads,
    )
    # ordered pairs, as halotools counts them: each unordered pair twice in DD and in the eta sum
    return _assemble(2 * counts.sum(axis=0), s_omega.sum(axis=0), 2.0 * s_eta.sum(axis=0), n, rbins,
                     period_arr, periodic)


class PairGeometry:
    """The pair geometry of fixed positions, for cheap extra orientation draws.

    Built once: pair counts and xi, per-galaxy per-bin tensors sum_j r_hat r_hat^T (omega becomes
    O(N * bins) per draw) and the list of pairs with their bins (eta is one sweep over it).
    Memory: 48 * N * n_bins bytes for the tensors plus 5 bytes per unordered pair in the bins.
    """

    def __init__(self, positions, period, rbins=BIN_EDGES, *, num_threads=None):
        self.rbins = _check_rbins(rbins)
        self.period, self.periodic = _check_period(period, self.rbins[-1])
        pos = _check_positions(positions, self.period, self.periodic)
        self.num_threads = _resolve_threads(num_threads)
        self.n_galaxies = n = pos.shape[0]
        nb = self.rbins.size - 1
        self._cells = None
        self.n_pairs = np.zeros(nb, dtype=np.int64)
        if n < 2:
            return
        cells = _build_cells(pos, self.period, self.periodic, self.rbins[-1])
        geometry = (cells.pos, cells.start, cells.ncell, self.period, self.periodic, self.rbins**2)
        tensor = np.zeros((n, nb, 6))
        n_upper = np.zeros(n, dtype=np.int64)
        none_i64, none_i32 = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32)
        pair_k_dtype = np.int8 if nb < 128 else np.int16
        _run_chunks(_geometry_chunk, geometry,
                    (False, none_i64, none_i32, np.zeros(0, dtype=pair_k_dtype), tensor, n_upper),
                    self.num_threads)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(n_upper, out=offsets[1:])
        pair_j = np.empty(offsets[-1], dtype=np.int32)
        pair_k = np.empty(offsets[-1], dtype=pair_k_dtype)
        _run_chunks(_geometry_chunk, geometry,
                    (True, offsets, pair_j, pair_k, np.zeros((0, nb, 6)), none_i64), self.num_threads)
        self._cells = cells
        self._tensor = tensor
        self._offsets = offsets
        self._pair_j = pair_j
        self._pair_k = pair_k
        self.n_pairs = 2 * np.bincount(pair_k, minlength=nb).astype(np.int64)

    @property
    def n_unordered_pairs(self) -> int:
        """Number of stored pairs (i < j) within the bins."""
        return 0 if self._cells is None else int(self._offsets[-1])

    def measure(self, orientations) -> Correlations:
        """xi, omega, eta for new orientations of the same galaxies (xi is the same for every draw)."""
        ori = _check_orientations(orientations, self.n_galaxies)
        if not self.periodic:
            _warn_no_xi()
        if self._cells is None:
            return _all_nan(self.n_galaxies, self.rbins)
        nb = self.rbins.size - 1
        s_omega = np.zeros((_N_CHUNKS, nb))
        s_eta = np.zeros((_N_CHUNKS, nb))
        _run_chunks(_orientation_chunk,
                    (ori[self._cells.order], self._tensor, self._offsets, self._pair_j, self._pair_k),
                    (s_omega, s_eta), self.num_threads)
        return _assemble(self.n_pairs, s_omega.sum(axis=0), 2.0 * s_eta.sum(axis=0), self.n_galaxies,
                         self.rbins, self.period, self.periodic)
