"""Reports: the STARD 2015 validation report (stard), its figures (inline SVG) and checklist."""
