"""Table 1 as a page or a CSV: the one place its HTML is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_table1(result: Any, out: Path, caption: str) -> None:
    """``out`` ending in .csv: the rows; .html: a page titled ``caption``."""
    import polars as pl

    from f2b_study.atomic import write_text
    from f2b_study.errors import InputError
    from f2b_study.stats.table1 import to_html, to_records
    from f2b_study.tables import write_csv

    if out.suffix.lower() == ".csv":
        write_csv(pl.DataFrame(to_records(result)), out)
    elif out.suffix.lower() in {".html", ".htm"}:
        from html import escape

        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(caption)}</title>"
                f"<style>{TABLE_CSS}</style></head><body>{to_html(result, caption)}</body></html>")
        write_text(out, page)
    else:
        raise InputError.at(out, expected="an output file ending in .csv or .html", show_value=False)


TABLE_CSS = """
body{font-family:system-ui,sans-serif;margin:2em}
table.table1{border-collapse:collapse;font-size:14px}
.table1 th,.table1 td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
.table1 td.level{padding-left:2em}.table1 td.test{color:#555;font-size:12px}.n{font-weight:normal;color:#555}
"""


