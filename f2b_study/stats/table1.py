"""Baseline characteristics table (the paper's Table 1, docs/methods.md), tableone-style: every p-value names its test.

Continuous variables: mean ± SD when Shapiro–Wilk P ≥ 0.01 in every group, else median (IQR); compared by
Student's t / Mann–Whitney U (two groups) or one-way ANOVA / Kruskal–Wallis (more). Categorical: n (%) with
column percentages; chi-square (Yates' correction on 2×2 tables), or Fisher's exact test when an expected count
is below 5 (exact on 2×2; on larger tables scipy's Monte Carlo version with 9,999 seeded tables, as R's
fisher.test(simulate.p.value = TRUE)). Written on scipy.stats; tableone itself needs pandas and does not
implement this selection rule.

Which variables are categorical: text columns, the known categorical ones (sex, bone status, centre, …), and
numeric columns with at most two distinct values (0/1-coded or any two-level coding): a mean of a 0/1 column is a
proportion, shown as n (%). Every row carries its summary ("mean ± SD", "median (IQR)", "n (%)") and the rule that
chose it, so a renderer can write the footnote (``summary_rules``, ``footnote``).

Refused with a one-line InputError naming file, row and value (the table would otherwise be silently wrong):
a value that is not a number in a numeric column (``7four`` among ages), a number outside the plausible range of a
known column (a negative age), a text column with too many levels to tabulate (an ID or free text), and a
patient_id that appears on two rows (the patient would be counted twice).
"""

from __future__ import annotations

import dataclasses
import html
import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from f2b_study import CLASSES
from f2b_study.cohort.schema import NUMERIC_RANGES, ROW, parse_number_expr
from f2b_study.errors import InputError
from f2b_study.tables import FIRST_DATA_ROW

NORMALITY_ALPHA = 0.01
MIN_EXPECTED = 5
FISHER_MONTE_CARLO_TABLES = 9999
SEED = 42
OVERALL = "Overall"
DEFAULT_VARIABLES = ("sex", "bone_status", "age_years", "height_cm", "weight_kg", "bmi")
CATEGORICAL_HINT = {"sex", "bone_status", "center", "split", "menopausal_status", "lowest_t_site", "predicted"}
KNOWN_NUMERIC = {*NUMERIC_RANGES, "lowest_t_score"}
MAX_LEVELS = 50  # more levels than this is an identifier or free text, not a Table 1 variable
ID_LEVELS = 10  # from this many levels, a column whose every value is distinct is an identifier
NUMERIC_SHARE = 0.9  # a column whose values are numbers but for a few is numeric with typos, not categorical


MEAN_SD = "mean ± SD"
MEDIAN_IQR = "median (IQR)"
COUNT_PCT = "n (%)"
NORMAL_RULE = f"Shapiro–Wilk P ≥ {NORMALITY_ALPHA:g} in every group"

LABELS = {
    "sex": "Sex",
    "bone_status": "Bone status",
    "age_years": "Age (years)",
    "height_cm": "Height (cm)",
    "weight_kg": "Weight (kg)",
    "bmi": "BMI (kg/m²)",
    "center": "Centre",
    "split": "Split",
    "lowest_t_score": "Lowest T-score",
}
LEVEL_LABELS = {"F": "Female", "M": "Male"}
GROUP_ORDER = {"bone_status": list(CLASSES), "split": ["train", "validation", "test"], "sex": ["M", "F"]}


@dataclasses.dataclass
class Table1Row:
    """One line of Table 1. ``level`` is None on a continuous variable's line and on the header line 'n'."""

    variable: str
    level: str | None
    groups: dict[str, str]
    p: float | None
    test: str | None
    summary: str | None = None  # "mean ± SD", "median (IQR)" or "n (%)"; None on the line 'n'
    rule: str | None = None  # why this summary, e.g. "Shapiro–Wilk P < 0.01 in osteoporosis"

    def to_json(self) -> dict:
        return {"variable": self.variable, "level": self.level, "groups": self.groups, "p": self.p,
                "test": self.test, "summary": self.summary, "rule": self.rule}


@dataclasses.dataclass
class Table1:
    by: str
    group_names: list[str]  # in display order, without the overall column
    rows: list[Table1Row]
    notes: list[str]

    def to_json(self) -> list[dict]:
        return [row.to_json() for row in self.rows]


def table1(frame: pl.DataFrame, by: str, variables: Sequence[str] | None = None, source: str = "table") -> Table1:
    """Table 1 of ``frame`` grouped by column ``by`` (rows with an empty ``by`` are left out and counted).

    ``source`` names the file in errors; a ``_row`` column (cohort.schema's ROW) gives the spreadsheet rows,
    else row i of the frame is row i + 2.
    """
    if by not in frame.columns:
        raise KeyError(by)
    if ROW not in frame.columns:
        frame = frame.with_row_index(ROW, offset=FIRST_DATA_ROW)
    _refuse_duplicate_ids(frame, source)
    notes: list[str] = []
    missing_group = frame.filter(pl.col(by).is_null()).height
    if missing_group:
        notes.append(f"{missing_group} row(s) with no '{by}' value are left out")
    frame = frame.filter(pl.col(by).is_not_null()).with_columns(pl.col(by).cast(pl.String))
    groups = _group_order(by, frame[by].unique().to_list())
    chosen = [v for v in (variables or DEFAULT_VARIABLES) if v in frame.columns and v != by]
    group_index = frame[by].to_numpy()
    rows = [Table1Row("n", None, {OVERALL: str(frame.height), **{
        g: str(int((group_index == g).sum())) for g in groups}}, None, None)]
    for variable in chosen:
        values, why = _as_numbers(frame, variable, source)
        if values is not None:
            rows.append(_continuous_row(variable, values, group_index, groups))
        else:
            text = _category_text(frame, variable)
            _refuse_many_levels(frame.with_columns(pl.Series(variable, text, dtype=pl.String)), variable, source)
            rows.extend(_categorical_rows(variable, text, group_index, groups, why))
    return Table1(by=by, group_names=groups, rows=rows, notes=notes)


def _refuse_duplicate_ids(frame: pl.DataFrame, source: str) -> None:
    if "patient_id" not in frame.columns:
        return
    ids = frame.select(pl.col("patient_id").cast(pl.String).str.strip_chars().alias("id"), ROW)
    repeated = ids.filter(pl.col("id").is_not_null() & pl.col("id").is_duplicated())
    if repeated.height:
        pid = repeated["id"][0]
        rows = repeated.filter(pl.col("id") == pid)[ROW].to_list()
        raise InputError.at(source, row=rows[1], column="patient_id", value=pid,
                            expected=f"one row per patient ({pid} is also on row {rows[0]}; Table 1 would count "
                            "the patient twice)")


def _category_text(frame: pl.DataFrame, variable: str) -> np.ndarray:
    """Display text of a categorical column: numbers as written (1, not 1.0), text stripped."""
    column = frame[variable]
    if column.dtype.is_numeric():
        return np.array([None if v is None or v != v else f"{v:g}" for v in column.cast(pl.Float64).to_list()],
                        dtype=object)
    return column.cast(pl.String).str.strip_chars().to_numpy()


def _refuse_many_levels(frame: pl.DataFrame, variable: str, source: str) -> None:
    present = frame.filter(pl.col(variable).is_not_null()).select(pl.col(variable).cast(pl.String), ROW)
    distinct = present.unique(variable, keep="first", maintain_order=True)
    levels = distinct.height
    identifier = levels >= ID_LEVELS and levels == present.height
    if levels <= MAX_LEVELS and not identifier:
        return
    # name the first value past the limit (or, for an identifier, the first one)
    value, row = distinct.row(MAX_LEVELS if levels > MAX_LEVELS else 0)
    what = "every value is different: an identifier" if identifier else "an identifier or free text"
    raise InputError.at(source, row=row, column=variable, value=value,
                        expected=f"a categorical column with at most {MAX_LEVELS} levels or a numeric column "
                        f"(this one has {levels} distinct values, {what}: leave it out of --vars)")


def _group_order(by: str, present: list[str]) -> list[str]:
    preferred = [g for g in GROUP_ORDER.get(by, []) if g in present]
    return preferred + sorted(g for g in present if g not in preferred)


def _as_numbers(frame: pl.DataFrame, variable: str, source: str = "table") -> tuple[np.ndarray | None, str]:
    """(float values, "") of a continuous column, or (None, why it is categorical).

    Text parses as numbers when every value does; a known numeric column, or one whose values are numbers but
    for a few, with a value that is not a number is an InputError naming the row; a numeric column with at
    most two distinct values is categorical.
    """
    if variable in CATEGORICAL_HINT:
        return None, "categorical variable"
    dtype = frame.schema[variable]
    if dtype.is_numeric():
        values = frame[variable].cast(pl.Float64).to_numpy()
    elif dtype == pl.String:
        parsed = frame.select(parse_number_expr(variable).alias("v"), pl.col(variable).alias("raw"), ROW)
        bad = parsed.filter(pl.col("raw").is_not_null() & (pl.col("v").is_null() | pl.col("v").is_nan()))
        present = parsed.filter(pl.col("raw").is_not_null()).height
        if bad.height:
            numeric_share = 1 - bad.height / present if present else 0.0
            if variable in KNOWN_NUMERIC or numeric_share >= NUMERIC_SHARE:
                raise InputError.at(source, row=bad[ROW][0], column=variable, value=bad["raw"][0],
                                    expected="a number (the other values of this column are numbers)"
                                    if variable not in KNOWN_NUMERIC else
                                    f"a number ({NUMERIC_RANGES.get(variable, (0, 0, 'a T-score'))[2]})")
            return None, "text column"
        values = parsed["v"].to_numpy()
    else:
        return None, "text column"
    if variable in NUMERIC_RANGES:
        low, high, expected = NUMERIC_RANGES[variable]
        out = np.flatnonzero((values < low) | (values > high))
        if out.size:
            i = int(out[0])
            raise InputError.at(source, row=int(frame[ROW][i]), column=variable, value=frame[variable][i],
                                expected=expected)
    distinct = np.unique(values[~np.isnan(values)])
    if distinct.size <= 2:
        coded = "0/1-coded" if set(distinct.tolist()) <= {0.0, 1.0} else "two distinct values"
        return None, f"{coded}: categorical"
    return values, ""


def _shapiro_p(values: np.ndarray) -> float:
    if values.size < 3 or np.ptp(values) == 0:
        return 0.0  # too few or constant values: normality cannot be shown, so median (IQR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that p may be inexact for n > 5000; the rule still holds
        return float(stats.shapiro(values).pvalue)


def _continuous_row(variable: str, values: np.ndarray, group_index: np.ndarray, groups: list[str]) -> Table1Row:
    present = ~np.isnan(values)
    per_group = [values[present & (group_index == g)] for g in groups]
    shapiro = [_shapiro_p(v) for v in per_group]
    normal = all(p >= NORMALITY_ALPHA for p in shapiro)
    describe = _mean_sd if normal else _median_iqr
    if normal:
        rule = NORMAL_RULE
    else:
        failed = [g for g, v, p in zip(groups, per_group, shapiro, strict=True) if p < NORMALITY_ALPHA]
        few = [g for g, v in zip(groups, per_group, strict=True) if g in failed and (v.size < 3 or np.ptp(v) == 0)]
        rule = f"Shapiro–Wilk P < {NORMALITY_ALPHA:g} in {', '.join(g for g in failed if g not in few)}" \
            if len(few) < len(failed) else ""
        if few:
            rule = "; ".join(r for r in (rule, f"fewer than 3 values or all equal in {', '.join(few)}") if r)
    cells = {OVERALL: describe(values[present]), **{g: describe(v) for g, v in zip(groups, per_group, strict=True)}}
    testable = [v for v in per_group if v.size >= 2]
    p, test = None, None
    if len(testable) >= 2 and len(testable) == len(per_group):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(per_group) == 2:
                test = "Student's t-test" if normal else "Mann–Whitney U test"
                result = (stats.ttest_ind(*per_group, equal_var=True) if normal
                          else stats.mannwhitneyu(*per_group, alternative="two-sided"))
            else:
                test = "One-way ANOVA" if normal else "Kruskal–Wallis test"
                result = stats.f_oneway(*per_group) if normal else stats.kruskal(*per_group)
        p = _finite(result.pvalue)
    elif len(groups) < 2:
        test = "one group: no test"
    else:
        test = "too few values: no test"
    missing = int((~present).sum())
    if missing:
        cells = {k: f"{v} [missing {int((~present & (group_index == k)).sum()) if k != OVERALL else missing}]"
                 for k, v in cells.items()}
    return Table1Row(variable, None, cells, p, test, MEAN_SD if normal else MEDIAN_IQR, rule)


def _categorical_rows(variable: str, values: np.ndarray, group_index: np.ndarray, groups: list[str],
                      rule: str = "categorical variable") -> list[Table1Row]:
    present = np.array([v is not None for v in values], dtype=bool)
    levels = _group_order(variable, sorted({str(v) for v in values[present]}))
    table = np.array([[int(((values == level) & (group_index == g)).sum()) for g in groups] for level in levels])
    p, test = _categorical_test(table, len(groups))
    totals = table.sum(axis=0)
    overall_total = table.sum()
    rows = []
    for i, level in enumerate(levels):
        cells = {OVERALL: _count_pct(int(table[i].sum()), int(overall_total))}
        cells.update({g: _count_pct(int(table[i, j]), int(totals[j])) for j, g in enumerate(groups)})
        rows.append(Table1Row(variable, level, cells, p, test, COUNT_PCT, rule))
    missing = int((~present).sum())
    if missing:
        cells = {OVERALL: str(missing), **{g: str(int((~present & (group_index == g)).sum())) for g in groups}}
        rows.append(Table1Row(variable, "missing", cells, None, "not tested", "n", rule))
    return rows


def _categorical_test(table: np.ndarray, n_groups: int) -> tuple[float | None, str | None]:
    if n_groups < 2:
        return None, "one group: no test"
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return None, "one level: no test"
    expected = stats.contingency.expected_freq(table)
    if (expected < MIN_EXPECTED).any():
        if table.shape == (2, 2):
            return _finite(stats.fisher_exact(table).pvalue), "Fisher's exact test"
        method = stats.MonteCarloMethod(n_resamples=FISHER_MONTE_CARLO_TABLES, rng=np.random.default_rng(SEED))
        return (_finite(stats.fisher_exact(table, method=method).pvalue),
                f"Fisher's exact test (Monte Carlo, {FISHER_MONTE_CARLO_TABLES:,} tables)")
    yates = table.shape == (2, 2)
    result = stats.chi2_contingency(table, correction=yates)
    return _finite(result.pvalue), "Chi-square test (Yates' correction)" if yates else "Chi-square test"


def _finite(value: float) -> float | None:
    value = float(np.asarray(value).squeeze())  # scipy's Monte Carlo Fisher test returns a 1-element array
    return value if np.isfinite(value) else None


def _mean_sd(values: np.ndarray) -> str:
    if values.size == 0:
        return "–"
    sd = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return f"{np.mean(values):.2f} ± {sd:.2f}"


def _median_iqr(values: np.ndarray) -> str:
    if values.size == 0:
        return "–"
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:.1f} ({q1:.1f}–{q3:.1f})"


def _count_pct(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.1f})" if total else "0 (–)"


# -- rendering -----------------------------------------------------------------------------------------------------

def summary_rules(result: Table1) -> list[dict[str, str]]:
    """One entry per variable: {variable, label, summary, rule}, in table order (the footnote's data)."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for row in result.rows:
        if row.variable == "n" or row.variable in seen or row.summary is None:
            continue
        seen.add(row.variable)
        out.append({"variable": row.variable, "label": LABELS.get(row.variable, row.variable),
                    "summary": row.summary, "rule": row.rule or ""})
    return out


def footnote(result: Table1) -> str:
    """The table's footnote: which rows are mean ± SD, which median (IQR), which n (%), and the rules."""
    rules = summary_rules(result)
    parts = []
    for summary in (MEAN_SD, MEDIAN_IQR):
        chosen = [r for r in rules if r["summary"] == summary]
        if chosen:
            detail = "; ".join(f"{r['label']}" + (f" ({r['rule']})" if r["rule"] and summary == MEDIAN_IQR else "")
                               for r in chosen)
            parts.append(f"{summary}: {detail}")
    binary = [r["label"] for r in rules if r["summary"] == COUNT_PCT and "categorical" in r["rule"]
              and r["rule"] != "categorical variable"]
    text = ""
    if parts:
        text = (f"Continuous variables are mean ± SD when {NORMAL_RULE}, otherwise median (IQR). "
                + ". ".join(parts) + ".")
    counted = [r for r in rules if r["summary"] == COUNT_PCT]
    if counted:
        listed = f" ({', '.join(binary)})" if binary else ""
        text += (" " if text else "") + ("Categorical variables are n (%) of the column; numeric columns with at "
                                         f"most two distinct values (0/1-coded or binary) are categorical{listed}.")
    return text.strip()


def format_p(p: float | None) -> str:
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def variable_label(variable: str, categorical: bool) -> str:
    label = LABELS.get(variable, variable)
    return f"{label}, n (%)" if categorical else label


def level_label(level: str | None) -> str:
    return LEVEL_LABELS.get(level or "", level or "")


def to_records(result: Table1) -> list[dict[str, str]]:
    """Flat display rows (for CSV and plain text): the p-value and test shown once per variable."""
    out: list[dict[str, str]] = []
    columns = [OVERALL, *result.group_names]
    seen: set[str] = set()
    for row in result.rows:
        first = row.variable not in seen
        seen.add(row.variable)
        name = "n" if row.variable == "n" else variable_label(row.variable, row.level is not None)
        record = {"variable": name if first else "", "level": level_label(row.level)}
        record.update({c: row.groups.get(c, "") for c in columns})
        record["p"] = format_p(row.p) if first else ""
        record["test"] = (row.test or "") if first else ""
        out.append(record)
    return out


def to_html(result: Table1, caption: str = "") -> str:
    """An HTML <table> fragment (escaped), the paper's layout: Overall, one column per group, p, test."""
    columns = [OVERALL, *result.group_names]
    n_row = result.rows[0].groups
    head = "".join(f"<th>{html.escape(c)}<br><span class='n'>(n = {html.escape(n_row.get(c, ''))})</span></th>"
                   for c in columns)
    body = []
    for record in to_records(result)[1:]:
        cells = "".join(f"<td>{html.escape(record[c])}</td>" for c in columns)
        label = html.escape(record["variable"] or "")
        level = html.escape(record["level"])
        first = f"<td class='var'>{label}</td>" if not level else f"<td class='level'>{level}</td>"
        if level and label:  # first level of a categorical variable: its own header line first
            body.append(f"<tr><td class='var'>{label}</td>{'<td></td>' * len(columns)}"
                        f"<td>{html.escape(record['p'])}</td><td class='test'>{html.escape(record['test'])}</td></tr>")
            body.append(f"<tr><td class='level'>{level}</td>{cells}<td></td><td></td></tr>")
            continue
        body.append(f"<tr>{first}{cells}<td>{html.escape(record['p'])}</td>"
                    f"<td class='test'>{html.escape(record['test'])}</td></tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in [footnote(result), *result.notes] if n)
    return (f"<table class='table1'>{cap}<thead><tr><th>Characteristic</th>{head}<th>P</th><th>Test</th></tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table>{notes}")
