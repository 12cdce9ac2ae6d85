"""Cohort stage: read and validate a centre's table, label bone status, join photos."""
