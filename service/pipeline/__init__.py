"""Composition of the stages: folders of images (train, triage) now; the timeline cycle in ``cycle``."""
