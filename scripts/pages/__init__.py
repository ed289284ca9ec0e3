"""Templates of the generated results pages in docs/results/, one module per page family; each `render` takes the
JSON results a command wrote and returns the page's markdown. Used by scripts/render_docs.py."""
