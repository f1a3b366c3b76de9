"""The watchdog, planned switchover, failover drills and their evidence."""
