"""Empirical privacy audit of a finished run: membership-inference attacks on the global model."""
