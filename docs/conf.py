"""Sphinx configuration of the IAEmu documentation: `sphinx-build -W -b html docs docs/_build/html`."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "iaemu"
author = "IAEmu contributors"
copyright = "2025, IAEmu contributors"
try:
    from iaemu_theory import __version__ as release
except ImportError:                      # the API pages need the package anyway; keep the config readable
    release = "0.1.0"
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build", "results/emulator_metrics.md",   # tables included by results/index.md
                    "results/hidden_accuracy.md"]

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

html_theme = "alabaster"
html_title = f"iaemu {release}"
html_theme_options = {"description": "IAEmu for Cobaya users", "page_width": "1100px", "body_max_width": "none"}


def _plain_docstrings(app, what, name, obj, options, lines):
    """The package's docstrings are plain text, not reStructuredText: |x| there is an absolute value, not a
    substitution, so escape the bars before Sphinx parses them."""
    lines[:] = [line.replace("|", "\\|") for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _plain_docstrings)
