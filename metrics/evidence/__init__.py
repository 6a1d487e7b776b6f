"""Evidence packs for DWP: CSVs, a workbook, a PDF report and a manifest an auditor can verify.

`pack.export_pack` writes a whole pack (used by `helpdesk evidence export` and the auditors'
page); `manifest.verify` checks one. Every figure comes from `metrics.compliance`.
"""
