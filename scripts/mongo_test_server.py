"""Starts the nx-27017 MongoDB wire-protocol server (scripts/services.sh runs it with the
server's own venv) with every update applied in Python rather than by SQLite's JSON
functions: those write a double with 15 significant digits (10 us of an epoch timestamp),
where MongoDB keeps all 17. The server's own switch for it is `set_force_fallback`."""

import sys

from neosqlite.collection.query_helper.utils import set_force_fallback
from nx_27017.nx_27017 import main

set_force_fallback(True)
sys.exit(main())
