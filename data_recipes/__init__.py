"""Conversion recipes for the real hand-pose benchmarks (see README.md in this folder)."""
