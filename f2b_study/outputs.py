"""Output folders split by who may see them: what may leave the site apart from what may not.

    OUT/shareable/   reports, aggregate tables, figures drawn on mean faces, summaries: may be sent to others
    OUT/private/     per-patient tables, logs that name photo files, QC review sheets, run folders: stay at the
                     site (the folder is 0700, its files 0600)

Every command that writes a folder writes it this way, with a README.txt saying so.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from f2b_study.errors import InputError

SHAREABLE, PRIVATE = "shareable", "private"
README = """This folder was written by f2b-study.

shareable/  may leave the site: reports, aggregate tables, figures drawn on mean faces, summaries. Patient IDs
            appear only as keyed pseudonyms; no individual face appears.
private/    must stay at the site: per-patient tables (IDs, probabilities, covariates), logs that name photo
            files, QC review sheets with faces, training runs. Readable by its owner only.

The pseudonym key is not here: it is in the study's key store (see `f2b-study --help` and the README).
"""


def owner_only(folder: Path) -> Path:
    """``folder`` created if needed and made owner-only (0700)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as error:
        raise InputError.at(folder, show_value=False,
                            expected=f"a folder that can be created and made private ({error.strerror or error})"
                            ) from None
    return folder


@dataclasses.dataclass(frozen=True)
class Outputs:
    root: Path

    @property
    def shareable(self) -> Path:
        return self.root / SHAREABLE

    @property
    def private(self) -> Path:
        return self.root / PRIVATE


def prepare_outputs(root: str | Path) -> Outputs:
    """``root`` with its shareable/ and private/ (0700) folders and the README that explains them."""
    from f2b_study.atomic import write_text

    outputs = Outputs(Path(root))
    if outputs.root.exists() and not outputs.root.is_dir():
        raise InputError.at(outputs.root, expected="an output folder (this is a file)", show_value=False)
    outputs.shareable.mkdir(parents=True, exist_ok=True)
    owner_only(outputs.private)
    if not (outputs.root / "README.txt").exists():
        write_text(outputs.root / "README.txt", README)
    return outputs
