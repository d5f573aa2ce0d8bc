"""The change-ticket gate: an external change-management system says whether a plan may
start (ticket exists, approved, window contains now), and hears how it went."""
