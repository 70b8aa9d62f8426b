"""``python -m crmvalue.cli``: the same as the ``crmvalue`` command."""

from crmvalue.cli import main

main()
