"""Writers: WebDataset shards + parquet with completion markers (shards.py), manifest and HF README (manifest.py)."""
