"""Cohort configs (`cohorts/NAME.toml`): where a centre's CSV and photos are, how its columns map onto the
canonical schema (DESIGN §3) and which labelling rules it overrides.

    name = "centre-a"
    csv = "centre_a/dxa.csv"          # relative to this file
    photos = "centre_a/photos"
    [columns]                         # canonical name = the centre's own column name
    patient_id = "PatientNo"
    [rules]
    men_min_age = 50                  # men are eligible when older than this
    menopause_age = 52                # women with no menopausal status: post at this age or older
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from f2b_study.errors import InputError


@dataclasses.dataclass(frozen=True)
class LabelRules:
    """Eligibility rules of DESIGN §4; the paper's inclusion is the default."""

    men_min_age: float = 50.0  # men are in the WHO population when age_years > men_min_age
    include_premenopausal: bool = False  # premenopausal women get the Z-score wording instead of exclusion
    include_younger_men: bool = False  # men aged <= men_min_age likewise
    menopause_age: float | None = None  # empty menopausal status: post when age >= this, else pre

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str | Path) -> LabelRules:
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise InputError.at(source, column=f"rules.{key}", value=key,
                                    expected=f"one of the rule names {sorted(known)}")
            want_bool = known[key].type in ("bool",)
            if want_bool and not isinstance(value, bool):
                raise InputError.at(source, column=f"rules.{key}", value=value, expected="true or false")
            if not want_bool and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InputError.at(source, column=f"rules.{key}", value=value, expected="a number")
            kwargs[key] = value
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class CohortConfig:
    """One centre's cohort. Built from a TOML file, or from a bare CSV/XLSX with defaults."""

    name: str
    table: Path
    photos: Path | None = None
    columns: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical -> centre's column
    rules: LabelRules = LabelRules()
    sections: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # [qc], [train], [screen]...
    source: Path | None = None  # the TOML file, when there is one

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.sections.get(name, {}))

    @property
    def default_photos(self) -> Path:
        """Photos default to the config's folder, else the table's own folder."""
        return self.photos if self.photos is not None else self.table.parent


KNOWN_SECTIONS = {"columns", "rules", "qc", "train", "screen", "report", "model", "explain"}


def load_config(path: str | Path) -> CohortConfig:
    """A cohort config from a `.toml` file, or defaults for a bare `.csv`/`.xlsx` cohort table."""
    path = Path(path)
    if path.suffix.lower() != ".toml":
        return CohortConfig(name=path.stem, table=path)
    if not path.exists():
        raise InputError.at(path, expected="an existing cohort config (.toml)", show_value=False)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError.at(path, expected=f"valid TOML in UTF-8 ({error})", show_value=False) from None
    base = path.parent
    for key in ("name", "csv"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise InputError.at(path, column=key, value=data.get(key), expected="a non-empty string")
    for key, value in data.items():
        if isinstance(value, dict) and key not in KNOWN_SECTIONS:
            raise InputError.at(path, column=f"[{key}]", value=key,
                                expected=f"a section among {sorted(KNOWN_SECTIONS)}")
    for key in ("columns", "rules"):
        if not isinstance(data.get(key, {}), dict):
            raise InputError.at(path, column=key, value=data[key], expected=f"a [{key}] section of name = value pairs")
    columns = data.get("columns", {})
    if not all(isinstance(v, str) for v in columns.values()):
        raise InputError.at(path, column="[columns]", value=columns, expected="canonical_name = \"your column\" pairs")
    from f2b_study.cohort.schema import CANONICAL_COLUMNS

    for canonical in columns:
        if canonical not in CANONICAL_COLUMNS:
            raise InputError.at(path, column=f"columns.{canonical}", value=canonical,
                                expected="a canonical column name (DESIGN §3), e.g. patient_id, t_femoral_neck")
    photos = data.get("photos")
    if photos is not None and not isinstance(photos, str):
        raise InputError.at(path, column="photos", value=photos, expected="a folder path (text)")
    return CohortConfig(
        name=data["name"].strip(),
        table=(base / data["csv"]).resolve(),
        photos=(base / photos).resolve() if photos else None,
        columns=dict(columns),
        rules=LabelRules.from_mapping(data.get("rules", {}), path),
        sections={k: v for k, v in data.items() if isinstance(v, dict) and k not in {"columns", "rules"}},
        source=path.resolve(),
    )
