"""The reporting checklists of the report's appendix, each item with what this report fills, fills in part, or
leaves to the authors, decided from what the report input actually contains:

- STARD 2015 (Bossuyt et al., BMJ 2015;351:h5527): 30 items, some in parts a/b. Item wording abridged.
- TRIPOD+AI (Collins et al., BMJ 2024;385:e078378): 27 items in 52 parts, for studies that develop or evaluate a
  prediction model with regression or machine learning. Item wording is our short paraphrase; the official
  checklist is at tripod-statement.org. ``applies``: D (development), E (evaluation) or D;E.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

FILLED, PARTLY, AUTHORS = "filled", "partly", "authors"


@dataclasses.dataclass(frozen=True)
class Item:
    number: str
    section: str
    text: str
    status: Callable[[Any], tuple[str, str]]  # report input -> (status, where / what is missing)


def _authors(what: str = "") -> Callable[[Any], tuple[str, str]]:
    return lambda _study: (AUTHORS, what)


def _fixed(status: str, what: str) -> Callable[[Any], tuple[str, str]]:
    return lambda _study: (status, what)


def _if(test: Callable[[Any], bool], yes: tuple[str, str], no: tuple[str, str]) -> Callable[[Any], tuple[str, str]]:
    return lambda study: yes if test(study) else no


def _flow(study: Any) -> bool:
    return bool(study.flow) and "enrolled" in study.flow


def _table1(study: Any) -> bool:
    return bool(study.table1)


def _facts(study: Any) -> Any:
    return getattr(study, "methods", None)


def _trained(study: Any) -> bool:
    """The report knows the model and how it was trained (the `study` chain), not only its predictions."""
    facts = _facts(study)
    return bool(study.provenance) or bool(facts is not None and facts.arch)


def _subgroups(study: Any) -> bool:
    return bool(study.evaluation.get("subgroups"))


def _split_table1(study: Any) -> bool:
    return any(getattr(result, "by", None) == "split" for _, result in study.table1)


def _split_known(study: Any) -> bool:
    facts = _facts(study)
    return bool(facts is not None and facts.split) or bool(study.flow and study.flow.get("split"))


ITEMS: tuple[Item, ...] = (
    Item("1", "Title or abstract", "Identification as a study of diagnostic accuracy using at least one measure of "
         "accuracy (sensitivity, specificity, predictive values, AUC)",
         _fixed(PARTLY, "report title and results; the manuscript's title is the authors'")),
    Item("2", "Abstract", "Structured summary of study design, methods, results and conclusions", _authors()),
    Item("3", "Introduction", "Scientific and clinical background, including the intended use and clinical role "
         "of the index test", _fixed(PARTLY, "intended use stated in the disclaimer; background is the authors'")),
    Item("4", "Introduction", "Study objectives and hypotheses", _authors()),
    Item("5", "Methods: study design", "Whether data collection was planned before the index test and reference "
         "standard were performed (prospective) or after (retrospective)", _authors()),
    Item("6", "Methods: participants", "Eligibility criteria",
         _fixed(FILLED, "Methods: eligibility and labelling rules, from the cohort configuration")),
    Item("7", "Methods: participants", "On what basis potentially eligible participants were identified",
         _authors()),
    Item("8", "Methods: participants", "Where and when potentially eligible participants were identified "
         "(setting, location and dates)", _fixed(PARTLY, "centres named; setting and dates are the authors'")),
    Item("9", "Methods: participants", "Whether participants formed a consecutive, random or convenience series",
         _authors()),
    Item("10a", "Methods: test methods", "Index test, in sufficient detail to allow replication",
         _if(_trained, (FILLED, "Methods: model and training, model provenance"),
             (PARTLY, "predictions evaluated; the model's provenance is not in a predictions file"))),
    Item("10b", "Methods: test methods", "Reference standard, in sufficient detail to allow replication",
         _fixed(PARTLY, "WHO/ISCD rule stated; DXA device, software and readers are the authors'")),
    Item("11", "Methods: test methods", "Rationale for choosing the reference standard (if alternatives exist)",
         _authors()),
    Item("12a", "Methods: test methods", "Definition of and rationale for test positivity cut-offs or result "
         "categories of the index test, distinguishing pre-specified from exploratory",
         _fixed(FILLED, "Methods: predicted class = highest probability (pre-specified)")),
    Item("12b", "Methods: test methods", "Definition of and rationale for test positivity cut-offs or result "
         "categories of the reference standard, distinguishing pre-specified from exploratory",
         _fixed(FILLED, "Methods: WHO T-score categories (pre-specified)")),
    Item("13a", "Methods: test methods", "Whether clinical information and reference standard results were "
         "available to the performers or readers of the index test",
         _fixed(PARTLY, "the index test is automated and sees the photo only; who handled the data is the "
                "authors'")),
    Item("13b", "Methods: test methods", "Whether clinical information and index test results were available to "
         "the assessors of the reference standard", _authors()),
    Item("14", "Methods: analysis", "Methods for estimating or comparing measures of diagnostic accuracy",
         _fixed(FILLED, "Methods: statistics")),
    Item("15", "Methods: analysis", "How indeterminate index test or reference standard results were handled",
         _fixed(PARTLY, "incomplete DXA and failed photo QC are exclusions with reasons; probability ties go to "
                "the first class")),
    Item("16", "Methods: analysis", "How missing data on the index test and reference standard were handled",
         _if(_flow, (FILLED, "participant flow: every excluded record with its reason"),
             (PARTLY, "rows without a reference class are refused; no flow counts were given"))),
    Item("17", "Methods: analysis", "Any analyses of variability in diagnostic accuracy, distinguishing "
         "pre-specified from exploratory",
         _if(lambda s: bool(s.evaluation.get("subgroups")),
             (FILLED, "subgroups by sex, centre and age band (pre-specified by the tool)"),
             (PARTLY, "no subgroup columns in the data"))),
    Item("18", "Methods: analysis", "Intended sample size and how it was determined", _authors()),
    Item("19", "Results: participants", "Flow of participants, using a diagram",
         _if(_flow, (FILLED, "participant flow diagram"), (PARTLY, "only the evaluated predictions are counted"))),
    Item("20", "Results: participants", "Baseline demographic and clinical characteristics of participants",
         _if(_table1, (FILLED, "Table 1"), (AUTHORS, "no covariates given"))),
    Item("21a", "Results: participants", "Distribution of severity of disease in those with the target condition",
         _fixed(FILLED, "counts by WHO class (osteopenia, osteoporosis) in the flow and tables")),
    Item("21b", "Results: participants", "Distribution of alternative diagnoses in those without the target "
         "condition", _authors()),
    Item("22", "Results: participants", "Time interval and any clinical interventions between index test and "
         "reference standard", _authors()),
    Item("23", "Results: test results", "Cross tabulation of the index test results (or their distribution) by "
         "the results of the reference standard", _fixed(FILLED, "confusion matrix")),
    Item("24", "Results: test results", "Estimates of diagnostic accuracy and their precision (such as 95% "
         "confidence intervals)", _fixed(FILLED, "Tables 2–4 with 95% CIs")),
    Item("25", "Results: test results", "Any adverse events from performing the index test or the reference "
         "standard", _authors()),
    Item("26", "Discussion", "Study limitations, including sources of potential bias, statistical uncertainty, "
         "and generalisability", _fixed(PARTLY, "statistical uncertainty (CIs), calibration and subgroups "
                                        "reported; the discussion is the authors'")),
    Item("27", "Discussion", "Implications for practice, including the intended use and clinical role of the index "
         "test", _authors()),
    Item("28", "Other information", "Registration number and name of registry", _authors()),
    Item("29", "Other information", "Where the full study protocol can be accessed", _authors()),
    Item("30", "Other information", "Sources of funding and other support; role of funders", _authors()),
)


def _rows(items: tuple[Item, ...], study: Any) -> list[dict[str, str]]:
    rows = []
    for item in items:
        status, where = item.status(study)
        rows.append({"number": item.number, "section": item.section, "text": item.text, "status": status,
                     "where": where})
    return rows


def checklist(study: Any) -> list[dict[str, str]]:
    """STARD 2015, item by item."""
    return _rows(ITEMS, study)


@dataclasses.dataclass(frozen=True)
class TripodItem(Item):
    applies: str = "D;E"


def _t(number: str, section: str, text: str, status: Callable[[Any], tuple[str, str]],
       applies: str = "D;E") -> TripodItem:
    return TripodItem(number, section, text, status, applies)


def _imbalance(study: Any) -> tuple[str, str]:
    facts = _facts(study)
    said = facts.training.get("class_imbalance") if facts is not None else None
    return (FILLED, f"Methods: {said}") if said else (AUTHORS, "state whether any class-imbalance method was used")


TRIPOD_ITEMS: tuple[TripodItem, ...] = (
    _t("1", "Title", "Say the study develops or evaluates a prediction model; name the target population and the "
       "predicted outcome", _fixed(PARTLY, "the report's title and header; the manuscript's title is the authors'")),
    _t("2", "Abstract", "Structured abstract (TRIPOD+AI for Abstracts)", _authors()),
    _t("3a", "Introduction", "Healthcare context, diagnostic or prognostic, why the model is needed, existing "
       "models", _authors()),
    _t("3b", "Introduction", "Target population, intended use in the care pathway, intended users",
       _fixed(PARTLY, "intended use (research, not diagnosis) in the disclaimer; the paper's pathway in the "
              "screening report; the clinical context is the authors'")),
    _t("3c", "Introduction", "Known health inequalities between sociodemographic groups", _authors()),
    _t("4", "Introduction", "Objectives: development, validation, or both", _authors()),
    _t("5a", "Methods: data", "Data sources for development and evaluation, why these data, how representative",
       _if(lambda s: bool(s.cohorts), (PARTLY, "centres named in the header and Methods; source type and "
                                       "representativeness are the authors'"), (AUTHORS, ""))),
    _t("5b", "Methods: data", "Dates of data collection (start and end of accrual)", _authors()),
    _t("6a", "Methods: participants", "Setting (primary/secondary care, population), number and location of "
       "centres", _if(lambda s: bool(s.cohorts), (PARTLY, "number and names of centres; care setting and location "
                                                  "are the authors'"), (AUTHORS, ""))),
    _t("6b", "Methods: participants", "Eligibility criteria",
       _fixed(FILLED, "Methods: eligibility and labelling rules, from the configuration")),
    _t("6c", "Methods: participants", "Treatments received and how they were handled", _authors()),
    _t("7", "Methods: data preparation", "Pre-processing and quality checks, and whether they were similar across "
       "sociodemographic groups",
       _if(lambda s: _facts(s) is not None and bool(_facts(s).photo_qc),
           (PARTLY, "Methods: face standardisation and QC thresholds; exclusions counted in the flow; QC by "
                    "sociodemographic group is not reported"),
           (PARTLY, "exclusions counted in the flow; the QC settings are not in this report"))),
    _t("8a", "Methods: outcome", "Outcome definition and time horizon, how and when assessed, why this outcome, "
       "whether assessed alike across groups",
       _fixed(PARTLY, "Methods: WHO T-score categories on the lowest site; DXA device, timing and rationale are "
              "the authors'")),
    _t("8b", "Methods: outcome", "Qualifications and demographics of outcome assessors, if judgement is needed",
       _authors()),
    _t("8c", "Methods: outcome", "Blinding of the outcome assessment", _authors()),
    _t("9a", "Methods: predictors", "How the initial predictors were chosen, any pre-selection",
       _fixed(PARTLY, "the predictor is the standardised face photo (Methods); the rationale is the authors'"), "D"),
    _t("9b", "Methods: predictors", "Definition of every predictor, how and when measured, blinding",
       _fixed(PARTLY, "photo standardisation in Methods; how and when photos were taken is the authors'")),
    _t("9c", "Methods: predictors", "Qualifications and demographics of predictor assessors, if judgement is needed",
       _fixed(PARTLY, "the photo is read by the model, not a person; the photographers are the authors'")),
    _t("10", "Methods: sample size", "How the study size was arrived at and why it suffices", _authors()),
    _t("11", "Methods: missing data", "How missing data were handled; reasons for omitted data",
       _if(_flow, (FILLED, "participant flow: every excluded record with its reason (complete cases analysed)"),
           (PARTLY, "rows without a reference class are refused; no flow counts were given"))),
    _t("12a", "Methods: analysis", "How the data were used: partitioning into development and evaluation",
       _if(_split_known, (FILLED, "Methods and flow: the training/validation split"),
           (PARTLY, "evaluated predictions only")), "D"),
    _t("12b", "Methods: analysis", "How predictors were handled (functional form, rescaling, standardisation)",
       _if(_trained, (FILLED, "Methods: face standardisation and the model's input"),
           (PARTLY, "predictions file: the model's input handling is not recorded")), "D"),
    _t("12c", "Methods: analysis", "Type of model, rationale, building steps, hyperparameter tuning, internal "
       "validation", _if(_trained, (PARTLY, "Methods: model, configuration, training and early stopping; the "
                                            "rationale is the authors'"),
                         (AUTHORS, "predictions file: the model is not described")), "D"),
    _t("12d", "Methods: analysis", "Heterogeneity of performance across clusters (e.g. centres)",
       _if(lambda s: bool(s.multicentre), (FILLED, "multi-centre: per-centre results, meta-analysis, I²"),
           (PARTLY, "one centre: heterogeneity not examined"))),
    _t("12e", "Methods: analysis", "Performance measures and plots (discrimination, calibration, clinical utility), "
       "model comparisons", _fixed(FILLED, "Methods: statistics; Statistical definitions")),
    _t("12f", "Methods: analysis", "Any model updating (e.g. recalibration) after evaluation",
       _fixed(FILLED, "none: the model is evaluated as trained, without recalibration"), "E"),
    _t("12g", "Methods: analysis", "How the predictions were calculated (formula, code, object, API)",
       _if(_trained, (FILLED, "Methods and provenance: the checkpoint, its architecture and the tool's version"),
           (PARTLY, "the tool's version is named; the model behind the predictions file is not")), "E"),
    _t("13", "Methods: class imbalance", "Any class-imbalance method, why and how, and any recalibration",
       _imbalance),
    _t("14", "Methods: fairness", "Approaches to model fairness and their rationale",
       _if(_subgroups, (PARTLY, "performance by sex, centre and age band is reported; fairness approaches are the "
                                "authors'"), (AUTHORS, ""))),
    _t("15", "Methods: model output", "The model's output (probabilities, classes) and how thresholds were set",
       _fixed(FILLED, "Methods: three class probabilities; the class is the most probable (no tuned threshold)"),
       "D"),
    _t("16", "Methods: training vs evaluation", "Differences between development and evaluation data (setting, "
       "eligibility, outcome, predictors)",
       _if(_split_table1, (PARTLY, "Table 1 by split compares the two sets; setting differences are the authors'"),
           (AUTHORS, ""))),
    _t("17", "Methods: ethics", "Ethics committee approval and consent (or waiver)", _authors()),
    _t("18a", "Open science", "Funding and the funders' role", _authors()),
    _t("18b", "Open science", "Conflicts of interest", _authors()),
    _t("18c", "Open science", "Where the protocol can be accessed (or that there is none)", _authors()),
    _t("18d", "Open science", "Registration (register and number, or not registered)", _authors()),
    _t("18e", "Open science", "Availability of the study data", _authors()),
    _t("18f", "Open science", "Availability of the analysis code",
       _fixed(PARTLY, "the tool and its version are named in the header; where the code and configuration are "
              "shared is the authors'")),
    _t("19", "Patient and public involvement", "Patient and public involvement, or none", _authors()),
    _t("20a", "Results: participants", "Flow of participants, with and without the outcome (a diagram helps)",
       _if(_flow, (FILLED, "participant flow diagram with each reference-standard class"),
           (PARTLY, "only the evaluated predictions are counted"))),
    _t("20b", "Results: participants", "Characteristics overall and per source: predictors, outcome events, missing "
       "data; differences across demographic groups",
       _if(_table1, (FILLED, "Table 1 (with missing counts)"), (AUTHORS, "no covariates given"))),
    _t("20c", "Results: participants", "Evaluation data compared with the development data on key predictors and "
       "outcome", _if(_split_table1, (FILLED, "Table 1 by split"), (AUTHORS, "")), "E"),
    _t("21", "Results: development", "Participants and outcome events in each analysis",
       _if(lambda s: bool(s.flow and s.flow.get("by_class")),
           (FILLED, "flow: each split by reference-standard class"),
           (PARTLY, "evaluated patients by class in the results"))),
    _t("22", "Results: model specification", "The full model (formula, code, object, API) and any restriction on "
       "access", _if(_trained, (PARTLY, "architecture, configuration and checkpoint hash in Methods; sharing the "
                                        "weights is the authors' decision"), (AUTHORS, "")), "D"),
    _t("23a", "Results: performance", "Performance with confidence intervals, also in key subgroups; plots",
       _if(_subgroups, (FILLED, "results, calibration and subgroups, all with 95% CIs; ROC and reliability plots"),
           (PARTLY, "overall results with 95% CIs; no subgroup columns in the data"))),
    _t("23b", "Results: performance", "Heterogeneity of performance across clusters",
       _if(lambda s: bool(s.multicentre), (FILLED, "multi-centre: forest plot, Q, I²"),
           (PARTLY, "one centre: not examined"))),
    _t("24", "Results: model updating", "Results of any model updating",
       _fixed(FILLED, "none: no updating was done"), "E"),
    _t("25", "Discussion", "Overall interpretation, including fairness, against objectives and other studies",
       _authors()),
    _t("26", "Discussion", "Limitations (sample, size, overfitting, missing data) and their effect on bias, "
       "uncertainty and generalisability",
       _fixed(PARTLY, "uncertainty (CIs), calibration and subgroups reported; the discussion is the authors'")),
    _t("27a", "Discussion: usability", "How poor-quality or missing input should be assessed and handled in use",
       _if(lambda s: _facts(s) is not None and bool(_facts(s).photo_qc),
           (FILLED, "Methods: photo QC rules; the flow counts each exclusion"),
           (PARTLY, "photo QC exclusions are counted in the flow")), "D"),
    _t("27b", "Discussion: usability", "Whether users interact with the input or model, and the expertise needed",
       _fixed(PARTLY, "the tool runs unattended on photos; who takes the photos and acts on the output is the "
              "authors'"), "D"),
    _t("27c", "Discussion: usability", "Next steps for research, applicability and generalisability", _authors()),
)


def tripod_checklist(study: Any) -> list[dict[str, str]]:
    """TRIPOD+AI (2024), item by item, with the D/E applicability."""
    rows = _rows(TRIPOD_ITEMS, study)
    for row, item in zip(rows, TRIPOD_ITEMS, strict=True):
        row["applies"] = item.applies
    return rows
