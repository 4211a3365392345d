"""Training wiring shared by train.py and the tests (callbacks)."""
