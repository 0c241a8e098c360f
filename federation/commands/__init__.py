"""Subcommands of ``lhsfed`` (one module each, registered in ``federation.cli``)."""
