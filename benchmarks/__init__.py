"""Scale benchmarks (issue F): ``make bench`` runs them and writes ``benchmarks/RESULTS.md``."""
