"""placeholder: the cli adapter is being written."""
