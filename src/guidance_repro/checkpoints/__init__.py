"""checkpoints subpackage."""
