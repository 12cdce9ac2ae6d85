"""Statistics (docs/methods.md): one definition of every number, used by every command and report. No torch here."""
