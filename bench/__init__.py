"""plunk_sql benchmarks: `make bench` / `plunk-sql bench` (see BENCHMARKS.md)."""
