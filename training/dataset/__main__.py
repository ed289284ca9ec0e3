"""`python -m training.dataset`: the same command as `iaemu-dataset` (merge, clean, split, summary)."""
import sys

from training.dataset.manage import main

sys.exit(main())
