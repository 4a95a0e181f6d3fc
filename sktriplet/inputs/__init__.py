"""The input boundary: the only place that knows what ``X`` is."""
