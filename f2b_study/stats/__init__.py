"""Statistics (DESIGN §10): one definition of every number, used by every command and report. No torch here."""
