from __future__ import annotations

import pytest

from xdpgate.control.classify.engine import Classifier


@pytest.fixture
def clf() -> Classifier:
    return Classifier(max_packets=8)
