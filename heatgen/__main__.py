from __future__ import annotations

import sys

from heatgen.cli import main

sys.exit(main())
