"""The torch tests run single-threaded: tiny models, and the machine's cores are shared."""

import pytest

torch = pytest.importorskip("torch", reason="the PyTorch adapter's tests need torch (pip install 'fggp[torch]')")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
