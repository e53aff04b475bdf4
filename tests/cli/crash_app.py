"""An `--app` module that imports in the parent of `--processes` but raises in each child (a
module reading something only a worker process has, say): the children fail as they start."""

from __future__ import annotations

import sys

if "--child" in sys.argv:
    raise RuntimeError("clitest: this module cannot be imported in a worker process")
