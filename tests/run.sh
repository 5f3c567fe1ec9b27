#!/usr/bin/env bash
# The whole test suite. Keras fixes its backend per process, so the Keras tests (and the
# Keras parameters of the cross-backend tests) run once per Keras backend, each in its own
# process. Extra arguments go to every pytest call (e.g. -x, -q).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest "$@" tests --ignore=tests/keras
for backend in tensorflow jax torch; do
  echo "== Keras backend: $backend"
  KERAS_BACKEND=$backend python -m pytest "$@" tests/keras tests/test_contract.py -k "keras"
done
