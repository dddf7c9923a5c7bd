"""Reproduce the paper's dataset analysis: composition, colour vs emotion, Markov transitions, phrases, report."""
