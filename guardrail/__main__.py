"""``python -m guardrail`` is the same as the ``guardrail`` command."""

import sys

from .cli import main

sys.exit(main())
