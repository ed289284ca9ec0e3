"""The fast populate (training.mocks.fastpop) draws the galaxies of halotools-IA (training.mocks.model) in law.

Statistical tests on the toy catalog (3000 hosts, 60 Mpc/h box). Each test combines its p-values with a
Bonferroni correction (p = min(1, n_tests * smallest p), valid under any dependence between the tests) and
passes when p > ALPHA = 1e-3; the draws are seeded, so a test passes or fails the same way every run.
Mutants (a changed satellite-selection rule, a wrong alignment strength) must be rejected by the same
statistic at p < MUTANT_P = 1e-6, which shows the tests can fail.

Sizes: R = 40 realisations of each populate per point (about 850 galaxies at TOY, 12,000 at SAT_RICH where
two thirds of the satellites find no subhalo left in their host), for occupations, placement and
misalignments; mean xi, omega, eta from 30 realisations of each at three points (850 to 3000 galaxies).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from iaemu_theory.conventions import N_BINS
from training.mocks.fastpop import (FastIAMockModel, FastPopulator, dimroth_watson_cos, mock_model,
                                    watson_abs_cos_cdf, watson_shape)
from training.mocks.model import realisation_seed

ALPHA = 1e-3
MUTANT_P = 1e-6
#: Realisations of each populate behind the occupation, placement and misalignment tests.
R = 40

TOY = dict(mu_cen=0.8, mu_sat=0.5, logMmin=11.8, sigma_logM=0.26, logM0=12.0, logM1=13.0, alpha=1.0)
#: Many satellites per host: about half of them find no subhalo left in their host (orphans).
SAT_RICH = dict(mu_cen=0.3, mu_sat=0.9, logMmin=12.2, sigma_logM=0.4, logM0=11.0, logM1=11.5, alpha=1.1)
#: About 3000 galaxies, 13% of the satellites orphans (for the statistics, which cost more at SAT_RICH's 12,000).
SAT_MID = dict(SAT_RICH, logM0=11.0, logM1=12.0, alpha=1.0)
ANTI = dict(mu_cen=-0.6, mu_sat=-0.3, logMmin=11.5, sigma_logM=0.2, logM0=11.8, logM1=12.6, alpha=0.8)


def bonferroni(pvalues) -> float:
    p = np.asarray([q for q in pvalues if np.isfinite(q)])
    return float(min(1.0, p.size * p.min()))


class CatalogFacts:
    """Per-row facts of the catalog, computed here independently of the fast populate."""

    def __init__(self, catalog, host_bins):
        t = catalog.halo_table
        self.ids = np.asarray(t["halo_id"])
        self.order = np.argsort(self.ids)
        self.upid = np.asarray(t["halo_upid"])
        self.hostid = np.asarray(t["halo_hostid"])
        self.mvir = np.asarray(t["halo_mvir"])
        self.mpeak = np.asarray(t["halo_mpeak"])
        self.pos = np.column_stack([np.asarray(t[f"halo_{c}"]) for c in "xyz"])
        self.rvir = np.asarray(t["halo_rvir"])
        self.host_row = self.row(self.hostid)
        self.bin = np.digitize(np.asarray(t["halo_mvir_host_halo"])[self.host_row], host_bins)
        sub = np.flatnonzero(self.upid != -1)
        ranked = sub[np.lexsort((-self.mpeak[sub], self.hostid[sub]))]
        first = np.r_[True, self.hostid[ranked][1:] != self.hostid[ranked][:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(ranked.size), 0))
        self.rank = np.full(self.ids.size, -1)
        self.rank[ranked] = np.arange(ranked.size) - start  # 0 = largest halo_mpeak in its host
        in_bin = sub[np.argsort(self.bin[sub], kind="stable")]
        bin_first = np.searchsorted(self.bin[in_bin], self.bin[in_bin])
        self.bin_size = np.bincount(self.bin[sub], minlength=len(host_bins) + 1)
        self.bin_quantile = np.full(self.ids.size, np.nan)  # position of a subhalo within its bin, in [0, 1)
        self.bin_quantile[in_bin] = (np.arange(in_bin.size) - bin_first) / self.bin_size[self.bin[in_bin]]
        self.Lbox = float(np.asarray(catalog.Lbox).reshape(-1)[0])

    def row(self, ids):
        return self.order[np.searchsorted(self.ids, ids, sorter=self.order)]


def _pooled(draws):
    out = {k: np.concatenate([d[k] for d in draws]) for k in draws[0]}
    out["realisation"] = np.concatenate([np.full(len(d["central"]), i) for i, d in enumerate(draws)])
    return out


def halotools_draw(model, facts, params, seed):
    t = model.populate(params, seed)
    central = np.asarray(t["gal_type"]) == "centrals"
    pos = np.column_stack([np.asarray(t[c], dtype=np.float64) for c in "xyz"])
    host_pos = np.column_stack([np.asarray(t[f"halo_{c}"], dtype=np.float64) for c in "xyz"])
    radial = pos - host_pos
    radial -= facts.Lbox * np.round(radial / facts.Lbox)
    halo_axis = np.column_stack([np.asarray(t[f"halo_axisA_{c}"], dtype=np.float64) for c in "xyz"])
    sub = np.where(central, -1, facts.row(np.asarray(t["halo_id"])))
    return dict(central=central, host=facts.row(np.asarray(t["halo_hostid"])), subhalo=sub,
                real=np.asarray(t["real_subhalo"]) & ~central, positions=pos,
                major=np.column_stack([np.asarray(t[f"galaxy_axisA_{c}"], dtype=np.float64) for c in "xyz"]),
                reference=np.where(central[:, None], halo_axis, radial))


def fast_draw(populator, facts, params, seed):
    g = populator.populate(params, seed)
    return dict(central=g.is_central, host=g.host, subhalo=g.subhalo, real=g.real_subhalo, positions=g.positions,
                major=g.major, reference=g.reference)


@pytest.fixture(scope="module")
def facts(toy_catalog, toy_model):
    return CatalogFacts(toy_catalog, toy_model.host_bins)


@pytest.fixture(scope="module")
def fast(toy_catalog):
    return FastPopulator(toy_catalog)


@pytest.fixture(scope="module")
def reference_draws(toy_model, facts):
    """halotools-IA realisations, cached per (point, count)."""
    cache = {}

    def get(name, params):
        if name not in cache:
            cache[name] = _pooled([halotools_draw(toy_model, facts, params, realisation_seed(1000, r))
                                   for r in range(R)])
        return cache[name]

    return get


def fast_pooled(populator, facts, params, base=2000):
    return _pooled([fast_draw(populator, facts, params, realisation_seed(base, r)) for r in range(R)])


# ----------------------------------------------------------------------------------------------
# reproducibility and interface


def test_same_seed_same_galaxies_and_seeds_matter(fast, toy_catalog):
    a, b = fast.populate(TOY, 11), FastPopulator(toy_catalog).populate(TOY, 11)
    for name in ("positions", "major", "is_central", "host", "subhalo", "real_subhalo"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = fast.populate(TOY, 12)
    assert len(a) != len(c) or not np.array_equal(a.positions, c.positions)
    assert np.allclose(np.linalg.norm(a.major, axis=1), 1.0, atol=1e-6)
    assert np.all((a.positions >= 0) & (a.positions < fast.Lbox))
    assert a.major.dtype == np.float64 and np.array_equal(a.major, a.major.astype(np.float32))


def test_positions_do_not_depend_on_the_alignment_strengths(fast):
    a = fast.populate(TOY, 5)
    b = fast.populate(dict(TOY, mu_cen=-0.2, mu_sat=0.0), 5)
    assert np.array_equal(a.positions, b.positions) and not np.array_equal(a.major, b.major)


def test_populate_leaves_the_global_rng_alone(fast):
    np.random.seed(3)
    before = np.random.get_state()
    fast.populate(TOY, 1)
    after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2] == after[2]


@pytest.mark.parametrize("bad, match", [(dict(TOY, sigma_logM=0.0), "sigma_logM"), (dict(TOY, mu_cen=1.5), "mu_cen")])
def test_bad_parameters_are_refused_by_name(fast, bad, match):
    with pytest.raises(ValueError, match=match):
        fast.populate(bad, 1)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seeds_are_refused(fast, seed):
    with pytest.raises(ValueError, match="seed"):
        fast.populate(TOY, seed)


def test_a_point_without_galaxies_gives_nan_statistics(toy_catalog):
    model = FastIAMockModel(toy_catalog)
    empty = dict(TOY, logMmin=20.0, logM0=20.0)
    assert len(model.populate(empty, 1)) == 0
    res = model.measure(empty, 1, n_realisations=2)
    assert res.nan_flag and np.all(np.isnan(res.stats)) and list(res.n_galaxies) == [0, 0]


def test_fast_model_measure_mirrors_iamockmodel(toy_catalog, toy_model):
    model = FastIAMockModel(toy_catalog)
    a = model.measure(TOY, 7, n_realisations=2, orientation_draws=2)
    b = model.measure(TOY, 7, n_realisations=2, orientation_draws=2)
    assert a.stats.shape == (2, 3, N_BINS) and a.orientation_stats.shape == (2, 3, N_BINS)
    assert np.array_equal(a.stats, b.stats) and np.array_equal(a.orientation_stats, b.orientation_stats)
    assert list(a.seeds) == [realisation_seed(7, 0), realisation_seed(7, 1)]
    assert not a.nan_flag
    assert np.array_equal(model.host_bins, toy_model.host_bins)
    assert (model.n_hosts, model.n_subhalos) == (toy_model.n_hosts, toy_model.n_subhalos)
    last = model.populate(TOY, int(a.seeds[-1]))
    assert np.array_equal(model.statistics(last), a.stats[-1])
    assert not np.array_equal(model.redraw_orientations(last, 1), last.major)


# ----------------------------------------------------------------------------------------------
# the Dimroth-Watson sampler


@pytest.mark.parametrize("mu", [-0.999, -0.9, -0.4, -0.05, 0.0, 0.05, 0.3, 0.7, 0.95, 0.999])
def test_watson_sampler_follows_the_analytic_cdf(mu):
    k = float(watson_shape(mu))
    rng = np.random.default_rng(42)
    cos = dimroth_watson_cos(k, 20000, rng)
    assert np.all(np.abs(cos) <= 1.0)
    p_abs = stats.kstest(np.abs(cos), lambda t: watson_abs_cos_cdf(t, k)).pvalue
    p_sign = stats.binomtest(int(np.sum(cos > 0)), cos.size).pvalue  # the axis has no preferred sign
    assert bonferroni([p_abs, p_sign]) > ALPHA


def test_perfect_alignments_are_exact():
    rng = np.random.default_rng(0)
    assert np.all(np.abs(dimroth_watson_cos(float(watson_shape(1.0)), 100, rng)) == 1.0)
    assert np.all(dimroth_watson_cos(float(watson_shape(-1.0)), 100, rng) == 0.0)


# ----------------------------------------------------------------------------------------------
# occupations


MASS_EDGES = np.linspace(11.0, 14.5, 8)


def _counts(draws, facts, central):
    rows = draws["host"][draws["central"] == central]
    return np.histogram(np.log10(facts.mvir[rows]), MASS_EDGES)[0]


@pytest.mark.parametrize("name, params", [("toy", TOY), ("sat_rich", SAT_RICH)])
def test_occupation_counts_per_mass_bin(name, params, fast, facts, reference_draws, toy_model):
    """Per log-mass bin, centrals and satellites summed over realisations: each populate against the exact
    expectation (Bernoulli and Poisson variances) and against each other; satellites per host (Poisson shape)."""
    from scipy.special import erf

    n = R
    ref = reference_draws(name, params)
    new = fast_pooled(fast, facts, params)
    host = np.flatnonzero((facts.upid == -1) & (facts.mvir > toy_model.min_host_mass))
    logm = np.log10(facts.mvir[host])
    which = np.digitize(logm, MASS_EDGES) - 1
    p_cen = 0.5 * (1 + erf((logm - params["logMmin"]) / params["sigma_logM"]))
    m0, m1 = 10 ** params["logM0"], 10 ** params["logM1"]
    lam = np.where(facts.mvir[host] > m0, np.clip(facts.mvir[host] - m0, 0, None) / m1, 0.0) ** params["alpha"]
    lam[facts.mvir[host] <= m0] = 0.0
    pvalues = []
    for central, mean, var in ((True, p_cen, p_cen * (1 - p_cen)), (False, lam, lam)):
        ok = (which >= 0) & (which < MASS_EDGES.size - 1)
        expect = n * np.bincount(which[ok], mean[ok], MASS_EDGES.size - 1)
        variance = n * np.bincount(which[ok], var[ok], MASS_EDGES.size - 1)
        got_new, got_ref = _counts(new, facts, central), _counts(ref, facts, central)
        use = variance > 5
        for got in (got_new, got_ref):
            pvalues += list(2 * stats.norm.sf(np.abs(got[use] - expect[use]) / np.sqrt(variance[use])))
        pvalues += list(2 * stats.norm.sf(np.abs(got_new[use] - got_ref[use]) / np.sqrt(2 * variance[use])))
    # the number of satellites per host among the most massive hosts: a 2 x K contingency table
    big = host[logm > 13.0]
    per_host = [np.bincount(np.searchsorted(big, d["host"][~d["central"] & np.isin(d["host"], big)])
                            + len(big) * d["realisation"][~d["central"] & np.isin(d["host"], big)],
                            minlength=len(big) * n) for d in (new, ref)]
    top = max(int(np.percentile(per_host[1], 99)), 2)
    table = np.array([np.bincount(np.minimum(c, top), minlength=top + 1) for c in per_host])
    table = table[:, table.sum(axis=0) > 0]
    pvalues.append(stats.chi2_contingency(table).pvalue)
    assert bonferroni(pvalues) > ALPHA, pvalues


# ----------------------------------------------------------------------------------------------
# satellite placement


def _reverse_within_hosts(populator: FastPopulator) -> FastPopulator:
    """Mutant: subhalos of smallest halo_mpeak are taken first."""
    i = np.arange(populator.n_subhalos)
    start = populator.sub_start[populator.sub_host]
    perm = start + populator.sub_count[populator.sub_host] - 1 - (i - start)
    for name in ("sub_rows", "sub_pos", "sub_offset", "sub_host"):
        setattr(populator, name, getattr(populator, name)[perm])
    return populator


def _orphans_from_any_bin(populator: FastPopulator) -> FastPopulator:
    """Mutant: a satellite without a subhalo of its own borrows one from any host, not one of its mass bin."""
    populator.bin_start = np.zeros_like(populator.bin_start)
    populator.bin_count = np.full_like(populator.bin_count, populator.n_subhalos)
    return populator


def placement_pvalues(new, ref, facts):
    """The subhalo rank within its host (real satellites), the real fraction per host bin, where orphans' donor
    subhalos sit (their host bin relative to the satellite's, their place within the bin) and radial offsets."""
    out = []
    ranks = [np.minimum(facts.rank[d["subhalo"][d["real"]]], 6) for d in (new, ref)]
    out.append(stats.chi2_contingency(np.array([np.bincount(r, minlength=7) for r in ranks])).pvalue)
    sats = [~d["central"] for d in (new, ref)]
    bins = [facts.bin[d["host"][s]] for d, s in zip((new, ref), sats)]
    real = [d["real"][s] for d, s in zip((new, ref), sats)]
    for b in np.unique(np.concatenate(bins)):
        table = np.array([[np.sum(r[bb == b]), np.sum(~r[bb == b])] for r, bb in zip(real, bins)])
        if table.min() >= 5:
            out.append(stats.chi2_contingency(table).pvalue)
    donors = [(d["subhalo"][s & ~d["real"]], d["host"][s & ~d["real"]]) for d, s in zip((new, ref), sats)]
    shift = [facts.bin[facts.host_row[sub]] - facts.bin[host] for sub, host in donors]
    out.append(stats.chi2_contingency(np.array([np.bincount(np.clip(s + 3, 0, 6), minlength=7) for s in shift])
                                      [:, np.bincount(np.clip(np.concatenate(shift) + 3, 0, 6), minlength=7) > 0]
                                      ).pvalue if max(np.ptp(s) for s in shift) > 0 else 1.0)
    out.append(stats.ks_2samp(*[facts.bin_quantile[sub] for sub, _ in donors]).pvalue)
    radius = [np.linalg.norm(d["reference"][~d["central"]], axis=1) / facts.rvir[d["host"][~d["central"]]]
              for d in (new, ref)]
    out.append(stats.ks_2samp(*radius).pvalue)
    return out


@pytest.mark.parametrize("rule", ["halotools", "smallest_mpeak_first", "orphans_from_any_bin"])
def test_satellite_placement_matches_and_mutants_are_rejected(rule, toy_catalog, facts, reference_draws):
    """The placement statistics at TOY (few satellites per host: which subhalos are taken) and SAT_RICH
    (many orphans: where they are borrowed from), Bonferroni over both points; mutants must be rejected."""
    populator = FastPopulator(toy_catalog)
    if rule == "smallest_mpeak_first":
        populator = _reverse_within_hosts(populator)
    elif rule == "orphans_from_any_bin":
        populator = _orphans_from_any_bin(populator)
    pvalues = []
    for name, params in (("toy", TOY), ("sat_rich", SAT_RICH)):
        ref = reference_draws(name, params)
        new = fast_pooled(populator, facts, params)
        if name == "sat_rich":  # the point has many orphans
            assert np.sum(~ref["real"] & ~ref["central"]) > 0.3 * np.sum(~ref["central"])
        for d in (ref, new):  # real satellites sit in their own host's subhalos, at the subhalo's position
            r = d["real"]
            assert np.array_equal(facts.host_row[d["subhalo"][r]], d["host"][r])
            assert np.allclose(d["positions"][r], facts.pos[d["subhalo"][r]])
        pvalues += placement_pvalues(new, ref, facts)
    p = bonferroni(pvalues)
    if rule == "halotools":
        assert p > ALPHA, pvalues
        orphans = ~new["real"] & ~new["central"]
        assert np.all(facts.bin[facts.host_row[new["subhalo"][orphans]]] == facts.bin[new["host"][orphans]])
    else:
        assert p < MUTANT_P, pvalues


# ----------------------------------------------------------------------------------------------
# misalignments


def _abs_cos(d, central):
    m = d["central"] == central
    a, b = d["major"][m], d["reference"][m]
    ok = np.linalg.norm(b, axis=1) > 0
    return np.abs(np.sum(a[ok] * b[ok], axis=1) / np.linalg.norm(a[ok], axis=1) / np.linalg.norm(b[ok], axis=1))


def _azimuth(d):
    """Azimuth of the major axis about its reference, in a frame fixed by the x axis."""
    n = d["reference"] / np.linalg.norm(d["reference"], axis=1, keepdims=True)
    m = d["major"] * np.sign(np.sum(d["major"] * n, axis=1, keepdims=True))
    e1 = np.cross(n, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(n, e1)
    return np.mod(np.arctan2(np.sum(m * e2, axis=1), np.sum(m * e1, axis=1)), 2 * np.pi)


@pytest.mark.parametrize("name, params, mutant", [("toy", TOY, False), ("anti", ANTI, False), ("toy", TOY, True)])
def test_misalignment_angles(name, params, mutant, toy_catalog, facts, reference_draws, monkeypatch):
    """|cos| of the major axis to the host axis (centrals) and to the radial direction (satellites): fast
    against halotools-IA (two-sample KS) and both against the analytic Dimroth-Watson CDF; uniform azimuths.
    The mutant halves the strength (k = -tan(pi mu / 4))."""
    import training.mocks.fastpop as fastpop

    ref = reference_draws(name, params)
    if mutant:
        monkeypatch.setattr(fastpop, "watson_shape", lambda mu: -np.tan(np.asarray(mu) * np.pi / 4))
    new = fast_pooled(FastPopulator(toy_catalog), facts, params)
    pvalues = []
    for central, mu in ((True, params["mu_cen"]), (False, params["mu_sat"])):
        k = float(watson_shape(mu))
        a, b = _abs_cos(new, central), _abs_cos(ref, central)
        pvalues.append(stats.ks_2samp(a, b).pvalue)
        pvalues.append(stats.kstest(a, lambda t: watson_abs_cos_cdf(t, k)).pvalue)
        pvalues.append(stats.kstest(b, lambda t: watson_abs_cos_cdf(t, k)).pvalue)
    for d in (new, ref):
        pvalues.append(stats.kstest(_azimuth(d) / (2 * np.pi), "uniform").pvalue)
    if mutant:
        assert bonferroni(pvalues) < MUTANT_P
    else:
        assert bonferroni(pvalues) > ALPHA, pvalues


# ----------------------------------------------------------------------------------------------
# the statistics


@pytest.mark.parametrize("name, params", [("toy", TOY), ("anti", ANTI), ("sat_mid", SAT_MID)])
def test_mean_statistics_equal_halotools_within_errors(name, params, toy_catalog, toy_model):
    """Mean xi, omega, eta over 30 realisations of each populate: Welch t-test per bin, Bonferroni over bins."""
    n = 30
    fast = FastIAMockModel(toy_catalog).measure(params, 3, n_realisations=n)
    ref = toy_model.measure(params, 4, n_realisations=n)
    a, b = fast.stats, ref.stats
    ok = np.all(np.isfinite(a), axis=0) & np.all(np.isfinite(b), axis=0) & (np.std(b, axis=0) > 0)
    assert ok.sum() > 30
    p = stats.ttest_ind(a[:, ok], b[:, ok], axis=0, equal_var=False).pvalue
    assert bonferroni(p) > ALPHA
    assert abs(np.mean(fast.n_galaxies) - np.mean(ref.n_galaxies)) < 4 * np.std(ref.n_galaxies) / np.sqrt(n) + 1


# ----------------------------------------------------------------------------------------------
# choosing the populate


def test_mock_model_chooses_the_populate(toy_catalog):
    from training.mocks.model import IAMockModel

    assert isinstance(mock_model(toy_catalog), FastIAMockModel)
    assert isinstance(mock_model(toy_catalog, "halotools"), IAMockModel)
    with pytest.raises(ValueError, match="populate='halo'"):
        mock_model(toy_catalog, "halo")


def test_generate_records_the_populate_and_refuses_to_mix(tmp_path, capsys):
    """iaemu-generate uses the fast populate by default, records it, and refuses to add halotools-IA points
    to its dataset (or fast points to a halotools-IA one, including datasets written before it was recorded)."""
    import json

    import training.dataset.generate as gen
    from training.catalogs.sources import load_catalog
    from training.dataset.schema import read_dataset

    args = ["--points", "1", "--seed", "3", "--catalog", "toy", "--realisations", "2"]
    fast_out, ht_out = tmp_path / "fast.h5", tmp_path / "halotools.h5"
    assert gen.main(args + ["--out", str(fast_out)]) == 0
    ds = read_dataset(fast_out)
    assert ds.attrs["populate"] == "fast" and json.loads(ds.attrs["generation_config"])["populate"] == "fast"
    direct = FastIAMockModel(load_catalog("toy")).measure(dict(zip(gen.PARAM_NAMES, ds.params[0])),
                                                          gen.point_seed(3, 0), 2)
    np.testing.assert_array_equal(ds.stats[0], direct.stats)
    capsys.readouterr()
    assert gen.main(args + ["--out", str(fast_out), "--populate", "halotools"]) == 2
    assert "populate: 'fast' there, 'halotools' now" in capsys.readouterr().err
    assert gen.main(args + ["--out", str(ht_out), "--populate", "halotools"]) == 0
    assert read_dataset(ht_out).attrs["populate"] == "halotools"
    assert gen.main(args + ["--out", str(ht_out)]) == 2
    assert "populate: 'halotools' there, 'fast' now" in capsys.readouterr().err
    legacy = {k: v for k, v in json.loads(read_dataset(ht_out).attrs["generation_config"]).items() if k != "populate"}
    legacy["engine"] = "training.generate:mock_engine"  # a config written before the populate was recorded
    gen.check_same_config(legacy, dict(legacy, engine=gen.DEFAULT_ENGINE, populate="halotools"), "old")
    with pytest.raises(ValueError, match="populate"):
        gen.check_same_config(legacy, dict(legacy, engine=gen.POPULATE_ENGINES["fast"], populate="fast"), "old")
    assert gen.main(args + ["--out", str(tmp_path / "x.h5"), "--populate", "fast", "--engine", "m:f"]) == 2
