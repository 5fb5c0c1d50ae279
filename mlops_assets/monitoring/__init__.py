"""Daily monitoring: predictions, Evidently drift metrics, and the ``dummy_metrics`` table."""
