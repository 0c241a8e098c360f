"""Datasets embedded in the package (data files only; loading lives in ``federation.core.data``)."""
