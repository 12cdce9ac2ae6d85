"""Presentation primitives shared by every stage that shows results (explain, report): one figure style
(style), how numbers read (format), codes as words (labels), tables as typed data rendered to HTML/XLSX/CSV
(tabular), and the report-section type other stages hand to the report (section). Below every pipeline layer:
it imports nothing of the pipeline."""
