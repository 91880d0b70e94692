"""The quotes demo: a small trading-desk service on every part of `cluster`.

``quotes.app`` is the aiohttp app (``cluster start quotes.app:make_app()``), ``quotes.jobs``
the jobs module (``--jobs quotes.jobs``); ``make run`` starts both with ``examples/`` on
``PYTHONPATH``. Only names that ``cluster`` exports are used.
"""
