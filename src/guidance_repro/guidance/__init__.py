"""guidance subpackage."""
