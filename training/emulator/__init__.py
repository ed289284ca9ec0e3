"""Layer 4: the emulator. Training (`train`, `iaemu-train`), test-set metrics (`evaluate`,
`iaemu-evaluate`) and posteriors against halotools-IA's own (`validation`, `iaemu-validate`). May import every
layer below.
"""
