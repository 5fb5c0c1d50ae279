"""Alerts and the retrain loop: the drift sensor, email, retraining and promotion."""
