"""Evaluation: scoring model outputs, statistics, and the base-vs-tuned evaluation runner."""
