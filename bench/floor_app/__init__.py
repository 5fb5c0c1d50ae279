"""The benchmark's floor: the least a Django view must do to serve the model.

One view (``urls.py``) that does the service's job with nothing else: for one trip
``json.loads``, one dict through the same skops ``DictVectorizer`` + ``LinearRegression``
pipeline, clipped to the trained range, ``json.dumps`` (no pandas); for a batch the
vectorised path a careful floor would take (``mlops_core.features.design_matrix``). No
validation, no logging, no middleware. ``bench/serving.py`` runs it under the service's own
gunicorn settings (``gunicorn.conf.py`` here copies them) and compares the service with it.
"""
