"""Notifications between the writers of the database and the processes waiting on them."""
