"""advgen's test suite (a regular package, so that a `tests` package another library installs cannot shadow it)."""
