"""placeholder: the keras adapter is being written."""
