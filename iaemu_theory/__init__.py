"""iaemu_theory: the IAEmu emulator core and its Cobaya components.

The core (`Emulator`) depends on numpy and torch only; the Cobaya classes are imported lazily
so that `import iaemu_theory` works without Cobaya.
"""
from .conventions import BIN_CENTRES, BIN_EDGES, PARAM_NAMES, STATISTICS
from .domain import Domain

__version__ = "0.1.0"

__all__ = ["BIN_CENTRES", "BIN_EDGES", "PARAM_NAMES", "STATISTICS", "Domain", "Emulator", "IAEmu",
           "IACorrelationLikelihood", "TNG300Likelihood", "__version__"]


#: Components that can be named once per instance, as ``iaemu_theory.<Class>_<tag>`` (see `__getattr__`).
_COMPONENTS = ("IAEmu", "IACorrelationLikelihood", "TNG300Likelihood")


def __getattr__(name):
    # Several instances of one component in a Cobaya input need distinct names. "IAEmu_1" (any tag after the
    # class name) is the IAEmu class itself, so an instance can be named iaemu_theory.IAEmu_1 without a
    # `class:` key, and Cobaya's tools that look components up by name (cobaya-bib, cobaya-doc) find it.
    base, sep, tag = name.partition("_")
    if sep and tag and base in _COMPONENTS:
        return __getattr__(base)
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
