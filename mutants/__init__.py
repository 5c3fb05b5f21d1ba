"""Mutation testing of syncsim's own checks: `make mutants` (python -m mutants) plants realistic bugs
one at a time and shows which invariant catches each (docs/ledger.md)."""
