"""``python -m api.cli``: the ``taskapi`` command."""

from api.cli import main

main()
