"""taskapi as a plain WSGI module for other servers: the app, its workers started at import.

Only for bench/compare_servers.py: ``taskapi serve`` (gunicorn) is how production runs it, with
a graceful shutdown that this module does not have.
"""

from __future__ import annotations

from api import create_app
from api.runtime import EXTENSION_KEY

app = create_app()
app.extensions[EXTENSION_KEY].pool.start()
