"""Training scripts for the embedded models (run as ``python -m generators.training.NAME``)."""
