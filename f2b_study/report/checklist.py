"""The STARD 2015 checklist (Bossuyt et al., BMJ 2015;351:h5527; 30 items, some in parts a/b), with what this
report fills, fills in part, or leaves to the authors. Item wording is abridged."""

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
         _if(lambda s: bool(s.provenance), (FILLED, "Methods: index test (model provenance)"),
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


def checklist(study: Any) -> list[dict[str, str]]:
    rows = []
    for item in ITEMS:
        status, where = item.status(study)
        rows.append({"number": item.number, "section": item.section, "text": item.text, "status": status,
                     "where": where})
    return rows
