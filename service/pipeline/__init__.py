"""Composition of the stages: ``cycle`` (one resumable cycle of the timeline), ``build`` (its parts from Settings),
``retrain`` (new models from labels or labelled folders, published with their verdicts on the queue),
``labelled_folders`` (the published workflow on plain folders), and ``service`` (the running daemon)."""
