"""Trainable models of the compiled architecture family and the training loop with LLC checkpoints.

`model` (the trainable transformer on the shared body, the modular-addition MLP), `train` (training, LLC curves,
lead-lag), `grokking/` (the modular-addition data and seed search). The studies that use them are in `studies/`.
"""
