# bench/: benchmarks that print figures (never part of make check's verdict).
