"""``python -m lic_jax.cli``: the ``lic`` command."""

import sys

from . import main

sys.exit(main())
