"""placeholder: the torch adapter is being written."""
