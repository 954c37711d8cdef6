"""Writes. Views, admin, tasks and commands call these; no business logic elsewhere."""
