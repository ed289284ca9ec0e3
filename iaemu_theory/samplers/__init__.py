"""Cobaya samplers for IAEmu models: `NUTS` (gradient-based, Pyro), used as
``sampler: {iaemu_theory.samplers.NUTS: {...}}``."""
from .nuts import NUTS

__all__ = ["NUTS"]
