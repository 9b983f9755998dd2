"""Benchmarks on the dev set; each module is also a script (``python benchmarks/dev_eval.py``)."""
