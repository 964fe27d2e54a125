"""`python -m server ...` is `loyalty-core ...`."""

from server.cli import main

raise SystemExit(main())
