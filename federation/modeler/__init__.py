"""The modeler's tools over a finished run folder: loading, evaluation, baselines, report,
plots, export, model card, scoring, the membership audit and synthetic cohorts."""
