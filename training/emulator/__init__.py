"""Layer 4: the emulator. Training (`train`, `iaemu-train`), test-set metrics (`evaluate`,
`iaemu-evaluate`), posteriors against halotools-IA's own (`validation`, `iaemu-validate`) and the speed
comparison (`benchmark`, `iaemu-benchmark`). May import every layer below.
"""
