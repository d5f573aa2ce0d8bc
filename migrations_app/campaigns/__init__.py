"""Maintenance campaigns: rolling host maintenance (services, engine, gate, task)."""
