"""Inference stage: batched screening of cohorts with a trained checkpoint."""
