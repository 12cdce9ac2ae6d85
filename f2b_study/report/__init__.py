"""Reports: the STARD 2015 validation report (stard) with its STARD and TRIPOD+AI checklists (checklist), methods
prose (methods), Table 1 (table1), the degenerate-model verdict (degenerate), the screening report (screening);
tables as typed data rendered to HTML/XLSX/CSV (tabular, format, labels); one figure style (style) and the
report's figures (figures)."""
