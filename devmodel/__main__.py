"""``python -m devmodel``: the ``devmodel`` command."""

from devmodel.commands import main

main()
