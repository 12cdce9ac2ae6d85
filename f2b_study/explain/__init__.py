"""Explainability (docs/methods.md, Explanations; the paper's SHAP and CRAFT sections, Tables 6–8, Figs. 12–15).

    baselines.py   what an "absent" region becomes: the training split's mean standardised face, or a blur
    shapley.py     exact region Shapley values: 5 regions = players, all 2⁵ = 32 coalitions per image, batched
    tables.py      Table 6 (mean ± SD per region per class, by sex) and Table 7 (cosine similarity, t-test);
                   Jensen–Shannon divergence for Table 8 (statistics only: no torch)
    pixel_maps.py  gradient × (input − baseline) averaged per class, drawn on a mean face
    craft.py       CRAFT: crops -> non-negative activations -> NMF concepts per class -> total Sobol importance
                   (Jansen, QMC masks) -> concept maps -> Table 8
    figures.py     the figures as inline SVG, drawn on a mean face only
    run.py         the `explain` pipeline over a cohort and a run folder; writes CSV/JSON/SVG outputs
    section.py     the report's explainability sections (f2b_study.report.stard.ReportSection)

Region Shapley works for every registry model; CRAFT needs non-negative activations and a head that runs from
them: the Face2Bone family with SSAM (face2bone, face2bone-no-fsa, face2bone-no-kan) and the ResNet comparators
(last residual stage, ReLU'd, global average pooled, fc); others are reported as skipped with the reason.
"""
