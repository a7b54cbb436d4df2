"""Writers: the output format, written and read in one place.

    layout.py    names and paths, sha256, completion markers, the manifest read and checked (no torch)
    shards.py    WebDataset tar + parquet per shard, written atomically, then its marker
    manifest.py  manifest.json (written last: the output is complete) and the README for `load_dataset`
    reader.py    a generated set read back for training (shards, a `load_dataset` dir, a Hub config)
"""
