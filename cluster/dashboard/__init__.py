"""The operator dashboard: one live web page for the whole tree, served by the supervisor at /dashboard/."""
