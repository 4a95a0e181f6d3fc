"""RandomAffine's shear: off by default, a horizontal slant when on."""

import math

import torch

from sktriplet.vision.augment import RandomAffine


def test_shear_slants_a_vertical_line_about_the_centre():
    img = torch.zeros(1, 1, 21, 21)
    img[0, 0, :, 10] = 1.0
    aug = RandomAffine(max_shift=0, max_rotation=0, max_scale=0, max_shear=30)
    torch.manual_seed(1)
    out = aug(img)[0, 0]
    cols = out.argmax(dim=1).float()
    assert cols[10] == 10  # the centre row stays put
    slope = (cols[-1] - cols[0]) / 20
    assert slope != 0 and abs(slope) <= math.tan(math.radians(30)) + 0.1
    # a straight line: columns move monotonically with the row
    diffs = cols.diff()
    assert bool((diffs * slope >= 0).all())


def test_zero_shear_draws_nothing_extra():
    x = torch.rand(8, 1, 16, 16)
    torch.manual_seed(0)
    a = RandomAffine()(x)
    after_a = torch.rand(1)
    torch.manual_seed(0)
    b = RandomAffine(max_shear=0.0)(x)
    after_b = torch.rand(1)
    assert torch.equal(a, b) and torch.equal(after_a, after_b)
    assert "max_shear=0.0" in repr(RandomAffine())
