"""Clinical comparators (docs/methods.md, Statistics): a face model is only interesting if it beats these.

OSTA (Osteoporosis Self-assessment Tool for Asians; Koh et al., Osteoporos Int 2001): index = 0.2 × (weight kg −
age years). Its published risk categories give the three-class prediction: low risk (index > −1) -> normal,
moderate (−4 ≤ index ≤ −1) -> osteopenia, high (index < −4) -> osteoporosis; accuracy, precision, recall, F1,
kappa and the confusion matrix come from these categories (on the continuous index, no truncation). OSTA is a
single monotone risk score, so its OvR AUCs are the index's own ranking where that ranking means something:
normal vs rest by the index, osteoporosis vs rest by −index. The middle class has no monotone ranking (null, with
that reason) and OSTA gives no probabilities (ECE, Brier and Hosmer–Lemeshow are null, with that reason).

Clinical logistic model: multinomial logistic regression of bone status on age, sex (male = 1) and BMI with an
intercept (statsmodels MNLogit, Newton–Raphson), fitted on the training split only and applied to the evaluated
rows: a probabilistic comparator with every metric the face model has.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import polars as pl

from f2b_study import CLASSES

OSTA_LOW = -1.0  # index > -1: low risk
OSTA_HIGH = -4.0  # index < -4: high risk
OSTA_LABEL = "OSTA index"
LOGIT_LABEL = "Clinical model (age, sex, BMI)"
OSTA_DESCRIPTION = ("0.2 × (weight kg − age years), published risk categories: low (> −1) → normal, moderate "
                    "(−4 to −1) → osteopenia, high (< −4) → osteoporosis (Koh et al. 2001)")
LOGIT_COVARIATES = ("age_years", "sex", "bmi")
MIN_PER_CLASS = 2  # training patients per class needed to fit the multinomial model at all


def osta_index(weight_kg: np.ndarray, age_years: np.ndarray) -> np.ndarray:
    return 0.2 * (np.asarray(weight_kg, dtype=np.float64) - np.asarray(age_years, dtype=np.float64))


def osta_class(index: np.ndarray) -> np.ndarray:
    """0 normal (low risk, > −1), 1 osteopenia (moderate, −4..−1), 2 osteoporosis (high risk, < −4)."""
    index = np.asarray(index, dtype=np.float64)
    return np.where(index > OSTA_LOW, 0, np.where(index >= OSTA_HIGH, 1, 2)).astype(np.int64)


def osta_auc_scores(index: np.ndarray) -> np.ndarray:
    """N×3 ranking scores: normal = index, osteopenia = NaN (no monotone ranking), osteoporosis = −index."""
    index = np.asarray(index, dtype=np.float64)
    return np.column_stack([index, np.full(index.shape, np.nan), -index])


OSTA_NO_AUC = "OSTA is one monotone risk score: it gives no one-vs-rest ranking for the middle class"
OSTA_NO_PROBABILITIES = "OSTA gives risk categories, not probabilities"


@dataclasses.dataclass
class ClinicalLogit:
    """A fitted MNLogit on age, sex, BMI (columns that do not vary in training are left out and named)."""

    columns: list[str]  # design columns after the intercept
    params: np.ndarray  # (1 + len(columns)) × (K − 1), reference class = normal
    n_train: int
    dropped: list[str]
    converged: bool

    def design(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(X with intercept, complete-row mask) for a frame with age_years, sex, bmi."""
        return _design(frame, self.columns)

    def predict_proba(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x, complete = self.design(frame)
        eta = np.column_stack([np.zeros(x.shape[0]), x @ self.params])
        eta -= eta.max(axis=1, keepdims=True)
        p = np.exp(eta)
        return p / p.sum(axis=1, keepdims=True), complete


def _design(frame: pl.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for column in columns:
        if column == "sex":
            sex = frame["sex"].to_numpy()
            parts.append(np.where(sex == "M", 1.0, np.where(sex == "F", 0.0, np.nan)))
        else:
            parts.append(frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy())
    x = np.column_stack([np.ones(frame.height), *parts]) if parts else np.ones((frame.height, 1))
    complete = np.isfinite(x).all(axis=1)
    return x, complete


def fit_clinical_logit(train: pl.DataFrame) -> tuple[ClinicalLogit | None, str | None]:
    """Fit on the training rows with complete age, sex and BMI; (None, reason) where it cannot be fitted."""
    from statsmodels.discrete.discrete_model import MNLogit
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    if train.height == 0:
        return None, "no training rows (split = train) to fit it on"
    missing = [c for c in LOGIT_COVARIATES if c not in train.columns or train[c].null_count() == train.height]
    if missing:
        return None, f"training rows lack {', '.join(missing)}"
    columns = list(LOGIT_COVARIATES)
    x, complete = _design(train, columns)
    y = train["y"].to_numpy().astype(np.int64)
    x, y = x[complete], y[complete]
    counts = np.bincount(y, minlength=len(CLASSES))
    if (counts < MIN_PER_CLASS).any():
        short = [CLASSES[k] for k in np.flatnonzero(counts < MIN_PER_CLASS)]
        return None, (f"training rows with complete age, sex and BMI have fewer than {MIN_PER_CLASS} "
                      f"{'/'.join(short)} patients")
    dropped = [c for j, c in enumerate(columns, start=1) if np.ptp(x[:, j]) == 0]
    keep = [0] + [j for j, c in enumerate(columns, start=1) if c not in dropped]
    columns = [c for c in columns if c not in dropped]
    x = x[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            result = MNLogit(y, x).fit(method="newton", maxiter=100, disp=0)
        except (np.linalg.LinAlgError, ValueError) as error:
            return None, f"the multinomial model could not be fitted ({type(error).__name__}: {error})"
    params = np.asarray(result.params, dtype=np.float64)
    if not np.isfinite(params).all():
        return None, "the multinomial model did not converge (non-finite coefficients)"
    converged = bool(result.mle_retvals.get("converged", False))
    return ClinicalLogit(columns, params, int(y.size), dropped, converged), None


def describe_logit(model: ClinicalLogit) -> str:
    text = (f"multinomial logistic regression on {', '.join(model.columns) or 'an intercept only'}, "
            f"fitted on {model.n_train} training patients")
    if model.dropped:
        text += f" ({', '.join(model.dropped)} left out: constant in the training rows)"
    if not model.converged:
        text += "; WARNING: Newton–Raphson did not converge in 100 iterations"
    return text
