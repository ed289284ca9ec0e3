"""Layer 0 of the pipeline: mechanisms every stage shares and nothing else.

Atomic writes, locks and checksums (`fileio`), the data-file manifest (`datafiles`), the command runner
and argparse types (`cli`), the resumable task farm (`tasks`). Imports nothing from the other layers.
"""
