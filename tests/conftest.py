import os

import pytest
import torch

# Tests are sized for a 2-core CPU; one thread per process keeps timings stable when
# pytest and notebook kernels run side by side.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
