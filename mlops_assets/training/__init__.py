"""The duration model: training, evaluation, the saved bundle, and the monthly training assets."""
