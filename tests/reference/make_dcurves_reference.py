"""Net benefit from MSKCC's dcurves on tests/reference/reference_data.csv -> dcurves_reference.csv.

dcurves pins pandas < 3, so it runs in a throwaway environment, not the project's (CI only reads the CSV):

    python3.11 -m venv .dcurves-env && .dcurves-env/bin/pip install dcurves==1.1.7
    .dcurves-env/bin/python tests/reference/make_dcurves_reference.py
"""

from pathlib import Path

import numpy as np
import pandas as pd
from dcurves import dca

here = Path(__file__).parent
data = pd.read_csv(here / "reference_data.csv")
p = data[["p_normal", "p_osteopenia", "p_osteoporosis"]].to_numpy()
predicted = p.argmax(axis=1)
frame = pd.DataFrame({
    "osteoporosis": (data["y"] == 2).astype(int),
    "low_bone_mass": (data["y"] != 0).astype(int),
    # the index test's scores as f2b_study.stats.decision builds them (1 − p_normal in float64)
    "score_osteoporosis": data["p_osteoporosis"].to_numpy(),
    "score_low_bone_mass": 1.0 - data["p_normal"].to_numpy(),
    # a fixed referral rule (0/1), as a comparator that gives categories
    "rule_osteoporosis": (predicted == 2).astype(int),
    "rule_low_bone_mass": (predicted != 0).astype(int),
})
thresholds = [i / 100 for i in range(1, 100)]
rows = []
for decision in ("osteoporosis", "low_bone_mass"):
    result = dca(data=frame, outcome=decision, modelnames=[f"score_{decision}", f"rule_{decision}"],
                 thresholds=thresholds)
    for _, r in result.iterrows():
        rows.append({"decision": decision, "model": r["model"].replace(f"_{decision}", ""),
                     "threshold": r["threshold"], "net_benefit": r["net_benefit"]})
out = pd.DataFrame(rows)
out["net_benefit"] = out["net_benefit"].map(lambda v: f"{v:.17g}")
out.to_csv(here / "dcurves_reference.csv", index=False)
import dcurves  # noqa: E402

print("dcurves", getattr(dcurves, "__version__", "?"), "rows", len(out), "numpy", np.__version__)
