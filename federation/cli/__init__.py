"""The `lhsfed` command line: one module a subcommand, each importing its layer only when run."""
