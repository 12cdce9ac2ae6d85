"""One centre of a study: where its table and photos are, how its columns map onto the canonical names, and
which eligibility rules it applies. Read from a cohort config (`cohorts/NAME.toml`) or defaulted for a bare
CSV/XLSX table.

    name = "centre-a"
    csv = "centre_a/dxa.csv"          # relative to this file
    photos = "centre_a/photos"
    [columns]                         # canonical name = the centre's own column name
    patient_id = "PatientNo"
    [rules]
    men_min_age = 50                  # men are eligible when older than this
    menopause_age = 52                # women with no menopausal status: post at this age or older

The same file's study-wide sections ([qc], [train], [explain], [report], [model], [screening], [privacy]) are kept
here as raw tables and typed by `f2b_study.config`, which owns the whole study's configuration.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from f2b_study.cohort.columns import CANONICAL_COLUMNS
from f2b_study.errors import InputError
from f2b_study.sections import Resolved, parse_section, resolve

CENTRE_KEYS = ("name", "csv", "photos")


@dataclasses.dataclass(frozen=True)
class LabelRules:
    """[rules]: who is eligible (docs/methods.md, "Labelling"); the paper's inclusion is the default."""

    men_min_age: float = dataclasses.field(default=50.0, metadata={"min": 0, "max": 130})
    include_premenopausal: bool = False  # premenopausal women get the Z-score wording instead of exclusion
    include_younger_men: bool = False  # men aged <= men_min_age likewise
    menopause_age: float | None = dataclasses.field(default=None, metadata={"min": 0, "max": 130})

    def describe(self) -> str:
        """The rules in words, for methods sections."""
        women = "postmenopausal women" + (" (premenopausal women too, with the ISCD Z-score wording)"
                                          if self.include_premenopausal else "")
        men = f"men aged over {self.men_min_age:g}" + (f" (men aged {self.men_min_age:g} or younger too, with the "
                                                      "ISCD Z-score wording)" if self.include_younger_men else "")
        text = f"{women} and {men}"
        if self.menopause_age is not None:
            text += (f"; women with no recorded menopausal status counted as postmenopausal from age "
                     f"{self.menopause_age:g}")
        return text


# [columns]: one optional field per canonical column, so the section validator refuses unknown names and
# non-text values like every other section.
ColumnMap = dataclasses.make_dataclass(
    "ColumnMap", [(name, str | None, dataclasses.field(default=None)) for name in CANONICAL_COLUMNS], frozen=True)
ColumnMap.__doc__ = "[columns]: canonical column name = the centre's own column name."


@dataclasses.dataclass(frozen=True)
class CohortConfig:
    """One centre's cohort. Built from a TOML file, or from a bare CSV/XLSX with defaults."""

    name: str
    table: Path
    photos: Path | None = None
    columns: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical -> centre's column
    rules: LabelRules = LabelRules()
    sections: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # raw study-wide tables
    source: Path | None = None  # the TOML file, when there is one
    rules_origins: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def default_photos(self) -> Path:
        """Photos default to the config's folder, else the table's own folder."""
        return self.photos if self.photos is not None else self.table.parent

    @property
    def origin(self) -> Path:
        """The file errors about this centre's settings name."""
        return self.source or self.table


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError.at(path, expected="an existing cohort config (.toml)", show_value=False)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError.at(path, expected=f"valid TOML in UTF-8 ({error})", show_value=False) from None


def read_centre(path: str | Path) -> CohortConfig:
    """A centre from a `.toml` cohort config, or defaults for a bare `.csv`/`.xlsx` cohort table."""
    path = Path(path)
    if path.suffix.lower() != ".toml":
        return CohortConfig(name=path.stem, table=path, rules_origins=resolve(LabelRules, {}, None, source=path,
                                                                             section="rules").origins)
    data = read_toml(path)
    base = path.parent
    for key in ("name", "csv"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise InputError.at(path, column=key, value=data.get(key), expected="a non-empty string")
    photos = data.get("photos")
    if photos is not None and (not isinstance(photos, str) or not photos.strip()):
        raise InputError.at(path, column="photos", value=photos, expected="a folder path (a non-empty string)")
    for key, value in data.items():
        if not isinstance(value, dict) and key not in CENTRE_KEYS:
            raise InputError.at(path, column=key, value=key,
                                expected=f"one of the top-level keys {', '.join(CENTRE_KEYS)}, or a [section]")
    columns = parse_section(ColumnMap, data.get("columns", {}), source=path, section="columns")
    rules: Resolved[LabelRules] = resolve(LabelRules, data.get("rules", {}), None, source=path, section="rules")
    return CohortConfig(
        name=data["name"].strip(),
        table=(base / data["csv"]).resolve(),
        photos=(base / photos).resolve() if photos else None,
        columns={k: v for k, v in dataclasses.asdict(columns).items() if v is not None},
        rules=rules.value,
        sections={k: v for k, v in data.items() if isinstance(v, dict) and k not in {"columns", "rules"}},
        source=path.resolve(),
        rules_origins=rules.origins,
    )
