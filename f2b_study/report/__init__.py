"""Reports: the STARD 2015 validation report (stard) with its STARD and TRIPOD+AI checklists (checklist), methods
prose (methods), Table 1 (table1), the degenerate-model verdict (degenerate), the screening report (screening),
the report's figures (figures, clinical_figures). The presentation primitives they share with the explain stage
(figure style, number formats, labels, typed tables) are in f2b_study.present."""
