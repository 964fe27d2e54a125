"""`python -m benchmarks`: one run of ceilings, load and micro-benchmarks (see benchmarks/README.md)."""

from benchmarks.runner import main

raise SystemExit(main())
