"""Backup and point-in-time restore: the format (`format`, `container`), taking a backup (`snapshot`), restoring
one through a gateway (`restore`), and the gateway's continuous archive of the log (`segments`)."""
