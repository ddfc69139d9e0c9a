"""The standing fault suite: hostile and malformed inputs for every reader and checker that
takes outside bytes (issue 11). ``python -m tests.faults.corpus`` writes the malformed corpus,
``python -m tests.faults.run_corpus`` runs it; pytest runs a fixed-seed sample."""
