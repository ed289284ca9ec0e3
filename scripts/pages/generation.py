"""The page docs/results/generation_benchmark.md, from generation_benchmark.json (benchmarks/bench_generate.py)."""
from __future__ import annotations

TITLE = "# Benchmark: generating a point, fast populate against halotools-IA"


def ms(x):
    return "-" if x is None else (f"{1e3 * x:.1f} ms" if x < 10 else f"{x:.1f} s")


def render(res: dict) -> str:
    """The cost of a generated point and of the statistics alone, from the benchmark's numbers."""
    lines = [TITLE, "",
             f"Measured with `{res['command']}` on {res['machine']}, one thread "
             f"(NUMBA_NUM_THREADS=1, OMP_NUM_THREADS=1), {res['date']}; {res['corrfunc']}.", "",
             f"## A generated point ({res['realisations']} realisations, default catalog)", "",
             "| point | galaxies | populate: fast | populate: halotools | ratio | point: fast populate + fused "
             "| point: halotools populate + fused | point: halotools-IA (populate + tpcf/ed_3d/ee_3d) "
             "| halotools-IA / fast | today / fast |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["points"]:
        lines.append(f"| {r['point']} | {r['galaxies']:.0f} | {ms(r['populate_fast'])} | {ms(r['populate_halotools'])} "
                     f"| {r['populate_halotools'] / r['populate_fast']:.1f} x | {ms(r['point_fast'])} "
                     f"| {ms(r['point_today'])} | {ms(r['point_halotools_ia'])} "
                     f"| {r['point_halotools_ia'] / r['point_fast']:.1f} x "
                     f"| {r['point_today'] / r['point_fast']:.1f} x |")
    stat_rows = res["statistics"]
    lines += ["", "Populate times are per realisation; point times are for all realisations.", "",
              f"## The statistics alone (clustered mock, {res['stat_box']:g} Mpc/h box)", "",
              "| galaxies | fused xi + omega + eta | Corrfunc DD (xi only) | fused / Corrfunc | halotools tpcf + ed_3d "
              "+ ee_3d | halotools / fused |", "|---|---|---|---|---|---|"]
    for r in stat_rows:
        cf, ht = r.get("corrfunc_dd"), r.get("halotools")
        cf_ratio = "-" if cf is None else f"{r['fused'] / cf:.1f} x"
        ht_ratio = "-" if ht is None else f"{ht / r['fused']:.1f} x"
        lines.append(f"| {r['galaxies']:.0e} | {ms(r['fused'])} | {ms(cf)} | {cf_ratio} | {ms(ht)} | {ht_ratio} |")
    if any("corrfunc_same_pairs" in r for r in stat_rows):
        same = all(r.get("corrfunc_same_pairs", True) for r in stat_rows)
        lines += ["", f"Corrfunc's pair counts equal the fused engine's DD in every bin: {same}."]
    return "\n".join(lines) + "\n"
