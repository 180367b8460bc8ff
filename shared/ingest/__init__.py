"""Ingest: read a blob past its cursor (`blobs`), split it (`parse`), normalize records
(`normalize`), write a chunk (`chunks`), run the loop and advance the cursor (`loop`), find
blobs that grew quietly (`sweep`). Imports the stages below it: keep, detect, store, core."""
