"""Schedules (EventBridge rate, cron and at expressions) as an event source."""
