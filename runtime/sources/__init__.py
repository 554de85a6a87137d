"""Models from remote sources, fetched once into a local cache: listed with sizes and checksums, downloaded with
resume, retries and a stall timeout, verified, then published whole (`cache.py`)."""
