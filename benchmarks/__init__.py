"""fggp's benchmarks: ``python -m benchmarks [--quick]`` runs those that apply here (see ``run.py``)."""
