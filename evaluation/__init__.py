"""Evaluation: metrics, the shared evaluation loop, result records and figures."""
