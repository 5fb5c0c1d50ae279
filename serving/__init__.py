"""The prediction service: a Django + django-ninja JSON API under gunicorn.

Read top-down: ``config`` (environment) -> ``source`` (MODEL_URI -> a concrete model) ->
``inputs`` (request body rules from the model's features) -> ``runtime`` (the model a worker
serves, atomic reloads) and ``sync`` (workers in step) -> ``api`` (endpoints) -> ``urls`` /
``settings`` / ``wsgi`` / ``gunicorn.conf.py`` (Django and gunicorn wiring). See docs/serving.md.
"""
