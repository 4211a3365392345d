"""NCSN++ building blocks: FIR resampling, initialisers, embeddings, residual/attention blocks."""
