"""Alembic migrations of hotpool's metadata database, one revision per file in ``versions/``.

Run them with ``hotpool migrate`` (or ``shared.schema.migrate``); no alembic.ini is needed,
``shared.schema.alembic_config`` builds the configuration in code. A new revision::

    from alembic import command
    from hotpool.shared.schema import alembic_config

    command.revision(alembic_config(url), "users and api keys", autogenerate=True, rev_id="0002")
"""
