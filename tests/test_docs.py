"""The documentation: the site builds with warnings as errors, and every Python example of the README and the
user guides runs (with the shipped emulator, from an empty working directory).

A block preceded by the line `<!-- skip-test -->` is not run (for illustrative output or heavy compute)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP_MARK = "<!-- skip-test -->"
PAGES = [ROOT / "README.md"] + sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of a markdown file that is not marked to skip."""
    text = path.read_text()
    blocks = []
    for m in FENCE.finditer(text):
        if m.group(1) != "python":
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == SKIP_MARK:
            continue
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(2)))
    return blocks


def test_examples_are_found(tmp_path):
    """The block finder sees the examples (so the test below cannot pass by finding nothing)."""
    found = {p.name: len(python_blocks(p)) for p in PAGES}
    assert found["README.md"] >= 1 and found["emulator.md"] >= 2 and found["cobaya.md"] >= 1, found
    assert sum(found.values()) >= 7, found
    text = "```python\nx = 1\n```\n<!-- skip-test -->\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    probe = Path(tmp_path) / "page.md"
    probe.write_text(text)
    assert [code for _, code in python_blocks(probe)] == ["x = 1\n"]


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_examples_run(page, tmp_path, monkeypatch, torch_one_thread):
    """The blocks of one page run in order in one namespace, from an empty working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IAEMU_ARTIFACT", raising=False)
    namespace = {"__name__": "__docs__"}
    for line, code in python_blocks(page):
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"the example at {page.relative_to(ROOT)} line {line} fails: "
                                 f"{type(e).__name__}: {e}") from e


def test_site_builds_with_warnings_as_errors(tmp_path):
    """`sphinx-build -W -b html docs docs/_build/html`, into a temporary folder; the API reference is generated."""
    out = tmp_path / "html"
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-j", "1", "-q", "-b", "html", str(DOCS), str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    api = (out / "api.html").read_text()
    for name in ("Emulator", "predict_torch", "Domain", "IAEmu", "TNG300Likelihood", "torch_logposterior", "NUTS",
                 "load_artifact"):
        assert name in api, name
    assert (out / "results" / "index.html").exists() and (out / "decisions.html").exists()


def test_generated_pages_agree_with_their_json():
    """Every generated results page re-renders, number for number, from the JSON results beside it."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_docs.py"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def _render(results: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "render_docs.py"), "--results", str(results),
                           "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_catalog_page_states_the_verdicts_of_its_numbers(tmp_path):
    """The catalog page is rendered from the fixtures in tests/data: each verdict line says what
    `catalog_verdicts` decides, a changed number changes the verdict, and --check sees a page that disagrees."""
    import json
    import shutil

    from training.catalogs.nbody.halos import MODELS
    from training.mocks.catalog_validation import catalog_verdicts

    results, out = tmp_path / "results", tmp_path / "pages"
    results.mkdir()
    for name in ("catalog_validation.json", "catalog_models.json"):
        shutil.copyfile(ROOT / "tests" / "data" / name, results / name)
    res = json.loads((results / "catalog_validation.json").read_text())
    models = json.loads((results / "catalog_models.json").read_text())

    def verdict_lines():
        run = _render(results, out)
        assert run.returncode == 0, run.stderr
        page = (out / "catalog.md").read_text()
        section = page.split("## Verdict against the realism targets")[1].split("## Halo model versions")[0]
        return page, {line.split(":")[0]: line for line in section.splitlines() if line.startswith("- ")}

    page, lines = verdict_lines()
    v = catalog_verdicts(res, models)
    said = lambda key: not lines[key].endswith("NOT met.")  # noqa: E731
    assert said("- IC linear power vs colossus <= 2%") == v["ic_power"]["met"]
    assert said("- Halo bias vs Tinker10 <= 15% on 5-20 Mpc/h") == v["bias"]["met"]
    assert said("- Realism xi") == v["realism"]["xi_median"]["met"]
    assert said("- Realism omega") == v["realism"]["omega_median"]["met"]
    measured = [models["models"][k]["catalog_id"] for k in sorted(models["models"], key=int)]
    assert "| | " + " | ".join(measured) + " |" in page                       # a column per measured version
    unmeasured = [f"v{m}" for m in sorted(MODELS) if str(m) not in models["models"]]
    assert unmeasured and ", ".join(unmeasured) in page                        # the rest are named
    assert (out / "catalog.md").read_text().count(res["catalog"]["catalog_id"]) >= 1

    res["bias"][0]["ratio"] = 2.0                                              # a bias far off Tinker10
    (results / "catalog_validation.json").write_text(json.dumps(res))
    _, lines = verdict_lines()
    assert lines["- Halo bias vs Tinker10 <= 15% on 5-20 Mpc/h"].endswith("NOT met.")

    shutil.copyfile(out / "catalog.md", results / "catalog.md")
    assert _render(results, tmp_path / "unused", "--check").returncode == 0
    (results / "catalog.md").write_text(page.replace(res["catalog"]["catalog_id"], "another-catalog"))
    stale = _render(results, tmp_path / "unused", "--check")
    assert stale.returncode == 1 and "catalog.md differs" in stale.stderr
