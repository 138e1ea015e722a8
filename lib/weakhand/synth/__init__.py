"""Procedural synthetic hands: anatomy, poses, domains, compiled renderer, dataset generator."""
