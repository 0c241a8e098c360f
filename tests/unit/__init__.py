"""Fast tests of one module or one refusal each; no real federation."""
