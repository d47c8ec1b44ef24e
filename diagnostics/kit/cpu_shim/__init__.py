"""Folder for PYTHONPATH (not imported as a package): its sitecustomize.py patches a CPU-only torch for vLLM."""
