"""Render the generated results pages from the JSON results beside them, without measuring anything.

    python scripts/render_docs.py [--results docs/results] [--out DIR] [--check]

Pages: catalog.md (from catalog_validation.json, catalog_models.json, catalog_small_scale.json),
validation_sample<N>.md (from validation_sample<N>.json), emulator_metrics.md (from emulator_metrics.json),
benchmark.md (from benchmark.json), generation_benchmark.md (from generation_benchmark.json), hidden_accuracy.md
(from hidden_accuracy*.json). The commands that
measure (`iaemu-catalog validate`, `iaemu-validate`, `iaemu-evaluate`, the benchmarks) write only the JSON; this
renders the pages, from the templates in scripts/pages/. With --out the pages go to DIR (the results folder is only
read); with --check nothing is written and the exit status is 1 when a page differs from what its JSON renders to
(the pages and their numbers agree).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pages import benchmark, catalog, generation, hidden_accuracy, metrics, validation


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def pages(results: Path) -> dict[str, str]:
    """{page name: markdown} of every page whose JSON is in `results`."""
    out = {}
    res = _read(results / catalog.RESULTS)
    if res is not None:
        command = res.get("command") or _recorded_command(results / "catalog.md")
        out["catalog.md"] = catalog.render(res, _read(results / catalog.MODELS_RESULTS),
                                           _read(results / catalog.POOLED), command)
    for report in sorted(results.glob("validation_sample*.json")):
        out[report.with_suffix(".md").name] = validation.render(json.loads(report.read_text()))
    for name, module in (("emulator_metrics", metrics), ("benchmark", benchmark), ("generation_benchmark", generation)):
        numbers = _read(results / f"{name}.json")
        if numbers is not None:
            out[f"{name}.md"] = module.render(numbers)
    hidden = [json.loads(p.read_text()) for p in sorted(results.glob("hidden_accuracy*.json"))]
    if hidden:
        out["hidden_accuracy.md"] = hidden_accuracy.render(hidden)
    return out


def render(results: Path, out: Path) -> list[Path]:
    """Write every page whose JSON is in `results` to `out`; returns the pages written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages(results).items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def _recorded_command(page: Path) -> str | None:
    """The command line an existing catalog page says it was made by (for JSON written before it recorded one)."""
    if not page.exists():
        return None
    return next((line for line in page.read_text().splitlines() if line.startswith("iaemu-catalog validate")), None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="docs/results", help="folder of the JSON results and pages")
    p.add_argument("--out", default=None, help="write the pages here (default: the results folder)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from its JSON")
    args = p.parse_args(argv)
    results = Path(args.results)
    if not results.is_dir():
        p.error(f"--results {results}: no such folder")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            stale = [page.name for page in render(results, Path(tmp))
                     if not (results / page.name).exists() or page.read_text() != (results / page.name).read_text()]
        for name in stale:
            print(f"{results / name} differs from what its JSON renders to", file=sys.stderr)
        return 1 if stale else 0
    for page in render(results, Path(args.out) if args.out else results):
        print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
