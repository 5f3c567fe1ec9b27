"""placeholder: the jax adapter is being written."""
