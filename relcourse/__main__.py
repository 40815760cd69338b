"""`python -m relcourse ...`: see relcourse.cli."""
from relcourse.cli import main

raise SystemExit(main())
