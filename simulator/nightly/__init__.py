"""Nightly scaling benchmarks: one scenario at growing fleet sizes, compared with a baseline, and a
capacity search against SLOs (`syncsim bench`). See docs/nightly.md."""
