"""Schedules: their fire times (``cron``) and the tick that turns due fire times into tasks,
exactly once however many processes tick (``ticker``)."""
