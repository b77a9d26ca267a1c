import pytest
import torch

from stylegan_fast.train.monitor import Tally


def test_tally_sums_on_the_device_and_reads_once():
    tally = Tally()
    assert tally.read() == {}
    tally.add("loss", torch.tensor(1.0))
    tally.add("loss", torch.tensor([3.0]))  # any scalar
    tally.add("skipped", torch.tensor(1.0, dtype=torch.float64))
    assert tally.sums == {}  # nothing read yet
    assert tally.read() == {"loss": 4.0, "skipped": 1.0}  # what was added since the last read
    tally.add("loss", torch.tensor(5.0))
    assert tally.read() == {"loss": 5.0} and tally.read() == {}
    assert tally.means(("loss", "skipped", "r1")) == {"loss": 3.0, "skipped": 1.0}
    tally.add("loss", torch.tensor(7.0))
    tally.restart()  # forgets what was read, keeps what was not
    assert tally.means(("loss",)) == {}
    tally.read()
    assert tally.means(("loss",)) == {"loss": 7.0}


def test_tally_keeps_its_own_copy():
    value, tally = torch.tensor(2.0), Tally()
    tally.add("x", value)
    tally.add("x", value)
    assert value.item() == 2.0 and tally.read() == {"x": pytest.approx(4.0)}
