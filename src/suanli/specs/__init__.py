"""User-facing file formats (JSON/YAML) parsed into domain values, with clear errors."""
