"""The ops domain: the platform watching itself (failed runs, days not monitored in time,
retrains that never started), through the same mailer as the alerts."""
