"""Re-render the generated results pages from the JSON results beside them, without measuring anything.

    python scripts/render_docs.py [--results docs/results] [--out DIR] [--check]

Pages: catalog.md (from catalog_validation.json, catalog_models.json, catalog_small_scale.json),
validation_sample<N>.md (from validation_sample<N>.json), emulator_metrics.md (from emulator_metrics.json).
With --out the pages go to DIR (the results folder is only read); with --check nothing is written and the
exit status is 1 when a page differs from what its JSON renders to (the pages and their numbers agree).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from training.emulator.evaluate import markdown_table
from training.emulator.validation import render_markdown as validation_markdown
from training.mocks.catalog_validation import write_markdown, write_models_section


def render(results: Path, out: Path) -> list[Path]:
    """Write every page whose JSON is in `results` to `out`; returns the pages written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    catalog = results / "catalog_validation.json"
    if catalog.exists():
        for name in ("catalog_models.json", "catalog_small_scale.json"):
            if (results / name).exists() and results != out:
                shutil.copyfile(results / name, out / name)
        res = json.loads(catalog.read_text())
        page = out / "catalog.md"
        write_markdown(res, page, _recorded_command(results / "catalog.md") or "iaemu-catalog validate")
        if (out / "catalog_models.json").exists():
            write_models_section(page)
        written.append(page)
    for report in sorted(results.glob("validation_sample*.json")):
        page = out / report.with_suffix(".md").name
        page.write_text(validation_markdown(json.loads(report.read_text())))
        written.append(page)
    metrics = results / "emulator_metrics.json"
    if metrics.exists():
        page = out / "emulator_metrics.md"
        page.write_text(markdown_table(json.loads(metrics.read_text())))
        written.append(page)
    return written


def _recorded_command(page: Path) -> str | None:
    """The command line an existing catalog page says it was made by (kept on a re-render)."""
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
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            stale = [page.name for page in render(results, Path(tmp))
                     if page.read_text() != (results / page.name).read_text()]
        for name in stale:
            print(f"{results / name} differs from what its JSON renders to", file=sys.stderr)
        return 1 if stale else 0
    for page in render(results, Path(args.out) if args.out else results):
        print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
