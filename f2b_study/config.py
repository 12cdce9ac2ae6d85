"""One study, one configuration: every centre and every section, typed and resolved once.

A study is one or more cohort configs (`cohorts/NAME.toml`, one per centre) or bare tables. Each centre brings its
own table, photos, [columns] and [rules]; the study-wide sections come from whichever config gives them, and two
centres that give the same section differently are refused (one study uses one set of rules):

    [qc]         photo quality control (f2b_study.faces.qc.QCThresholds)
    [train]      the model and its training recipe (f2b_study.training.settings.TrainSettings)
    [explain]    explanations (f2b_study.explain.settings.ExplainSettings)
    [report]     title, simulated labels, bootstrap (f2b_study.report.settings.ReportSettings)
    [model]      the trained model `screen` and `explain` use by default (ModelSettings)
    [screening]  pre-specified thresholds, batch size (f2b_study.inference.settings.ScreeningSettings)
    [privacy]    smallest cell a shared summary shows, the pseudonym key file (PrivacySettings)

Precedence: a command-line flag > the config > the default; `StudyConfig.describe()` records, per setting, the
value and where it came from, and `run.json` files carry it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from f2b_study.cohort.centre import CohortConfig, read_centre
from f2b_study.errors import InputError
from f2b_study.explain.settings import ExplainSettings
from f2b_study.faces.qc import QCThresholds
from f2b_study.inference.settings import ScreeningSettings
from f2b_study.report.settings import ReportSettings
from f2b_study.sections import Resolved, resolve
from f2b_study.training.settings import TrainSettings


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """[model]: the checkpoint (a run folder or its best/) that `screen` and `explain` use without --model;
    relative to the config file."""

    path: str | None = None


@dataclasses.dataclass(frozen=True)
class PrivacySettings:
    """[privacy]: ``min_cell``: counts below it are suppressed or merged in summaries that leave the site;
    ``key_file``: the study's pseudonym key (shared by the centres of one study), default the user's key store."""

    min_cell: int = dataclasses.field(default=5, metadata={"min": 1, "max": 1000})
    key_file: str | None = None


SECTIONS: dict[str, type] = {
    "qc": QCThresholds, "train": TrainSettings, "explain": ExplainSettings, "report": ReportSettings,
    "model": ModelSettings, "screening": ScreeningSettings, "privacy": PrivacySettings,
}
CENTRE_SECTIONS = ("columns", "rules")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Every centre and every study-wide section of one study, resolved (flag > config > default)."""

    centres: tuple[CohortConfig, ...]
    resolved: dict[str, Resolved[Any]]  # section name -> its settings and their origins
    section_files: dict[str, Path]  # section name -> the config that gave it

    @property
    def qc(self) -> QCThresholds:
        return self.resolved["qc"].value

    @property
    def train(self) -> TrainSettings:
        return self.resolved["train"].value

    @property
    def explain(self) -> ExplainSettings:
        return self.resolved["explain"].value

    @property
    def report(self) -> ReportSettings:
        return self.resolved["report"].value

    @property
    def model(self) -> ModelSettings:
        return self.resolved["model"].value

    @property
    def screening(self) -> ScreeningSettings:
        return self.resolved["screening"].value

    @property
    def privacy(self) -> PrivacySettings:
        return self.resolved["privacy"].value

    @property
    def name(self) -> str:
        return "+".join(c.name for c in self.centres)

    def model_path(self) -> Path | None:
        """[model] path, relative to the config that gave it."""
        if self.model.path is None:
            return None
        origin = self.section_files.get("model")
        return (origin.parent if origin else Path(".")) / self.model.path

    def describe(self, sections: Sequence[str] | None = None) -> dict[str, Any]:
        """{section: {key: {"value", "from"}}} for the given sections (default all), plus each centre's rules."""
        names = list(sections) if sections is not None else list(SECTIONS)
        data: dict[str, Any] = {name: self.resolved[name].describe() for name in names}
        data["centres"] = {c.name: {"table": str(c.table), "config": str(c.source) if c.source else None,
                                    "rules": {k: {"value": getattr(c.rules, k), "from": v}
                                              for k, v in c.rules_origins.items()}} for c in self.centres}
        return data

    def digest(self) -> str:
        """sha256 of the resolved settings (values only): two runs with one digest used the same rules."""
        values = {name: dataclasses.asdict(r.value) for name, r in sorted(self.resolved.items())}
        values["centres"] = [{"name": c.name, "rules": dataclasses.asdict(c.rules), "columns": c.columns}
                             for c in self.centres]
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def load_study(sources: Sequence[str | Path | CohortConfig],
               flags: Mapping[str, Mapping[str, Any]] | None = None) -> StudyConfig:
    """The study of these centres' configs (or bare tables), with ``flags`` ({section: {key: value or None}})
    taking precedence over the configs. Unknown sections or keys, wrong types and conflicting sections are input
    errors (exit 2)."""
    if not sources:
        raise InputError("no cohort given: expected one or more cohort configs (.toml) or tables (.csv/.xlsx)")
    centres = tuple(s if isinstance(s, CohortConfig) else read_centre(s) for s in sources)
    names = [c.name for c in centres]
    for centre in centres:
        if names.count(centre.name) > 1:
            raise InputError.at(centre.origin, column="name", value=centre.name,
                                expected="a centre name of its own (two centres of this study share it)")
    given: dict[str, tuple[dict[str, Any], Path]] = {}
    for centre in centres:
        for section, values in centre.sections.items():
            if section not in SECTIONS:
                raise InputError.at(centre.origin, column=f"[{section}]", value=section,
                                    expected=f"a section among {', '.join(['columns', 'rules', *SECTIONS])}")
            # type-check each centre's copy, so the error names the file that holds the bad value
            resolve(SECTIONS[section], values, None, source=centre.origin, section=section)
            if section in given and given[section][0] != values:
                raise InputError.at(centre.origin, column=f"[{section}]", show_value=False,
                                    expected=f"the same [{section}] as {given[section][1]} (one study uses one set "
                                    "of rules; give it in one config, or identically in each)")
            given.setdefault(section, (values, centre.origin))
    resolved = {}
    for section, cls in SECTIONS.items():
        values, origin = given.get(section, ({}, centres[0].origin))
        resolved[section] = resolve(cls, values, (flags or {}).get(section), source=origin, section=section)
    return StudyConfig(centres=centres, resolved=resolved,
                       section_files={name: origin for name, (_, origin) in given.items()})


def settings_from_record(record: Mapping[str, Any], section: str) -> Any:
    """A section rebuilt from a run record's ``{key: {"value", "from"}}`` (run.json round trip)."""
    values = {key: item["value"] for key, item in record.items()}
    return resolve(SECTIONS[section], values, None, source="run.json", section=section).value
