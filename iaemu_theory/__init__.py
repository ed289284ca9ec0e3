"""iaemu_theory: the IAEmu emulator core and its Cobaya components.

The core (`Emulator`) depends on numpy and torch only; the Cobaya classes are imported lazily
so that `import iaemu_theory` works without Cobaya.
"""
from .conventions import BIN_CENTRES, BIN_EDGES, PARAM_NAMES, STATISTICS
from .domain import Domain

__version__ = "0.1.0"

__all__ = ["BIN_CENTRES", "BIN_EDGES", "PARAM_NAMES", "STATISTICS", "Domain", "Emulator", "IAEmu",
           "IACorrelationLikelihood", "TNG300Likelihood", "__version__"]


def __getattr__(name):
    if name == "Emulator":
        from .emulator import Emulator
        return Emulator
    if name == "IAEmu":
        from .theory import IAEmu
        return IAEmu
    if name in ("IACorrelationLikelihood", "TNG300Likelihood"):
        from . import likelihoods
        return getattr(likelihoods, name)
    raise AttributeError(f"module 'iaemu_theory' has no attribute {name!r}")
