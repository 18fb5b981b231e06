"""Data generators for every task (labels from independent reference functions; nothing is downloaded)."""
