"""The benchmark's floor: the least a Django view must do to serve the model.

One view that parses the same JSON body as ``POST /predict``, builds a DataFrame and calls
the same model's ``ModelBundle.predict`` (the shared feature code), with no validation, no
logging and no middleware. ``bench/serving.py`` runs it under the service's own gunicorn
settings (``gunicorn.conf.py`` here copies them) and compares the service with it.
"""
