"""Mutation testing of the governance core: small, AST-based, one mutant at a time against the module's own tests.

`make mutate` (or `python -m tools.mutate [MODULE ...]`) runs it; README's Development section explains the figures.
Not part of CI: every mutant reruns its module's test selection.
"""
