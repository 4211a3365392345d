"""Rendered multitrack music for the four-stem model: `python -m datasets.music`."""
