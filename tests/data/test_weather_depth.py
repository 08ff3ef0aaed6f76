import numpy as np

from udistill.data.weather import estimate_depth


def test_objects_take_the_depth_of_their_ground_contact_point():
    h, w = 40, 10
    ground = np.zeros((h, w), bool)
    ground[30:, :] = True  # road from row 30 down
    ground[20:, 5:] = True  # nearer road in the right half reaches higher
    label = np.ones((h, w), np.uint8)
    label[:5] = 0  # sky
    flat = estimate_depth(h, w)
    d = estimate_depth(h, w, label=label, ground=ground)
    # a wall in column 2 stands on row 30: one depth from its base up to the sky
    np.testing.assert_allclose(d[5:30, 2], flat[30, 2])
    np.testing.assert_allclose(d[5:20, 7], flat[20, 7])
    np.testing.assert_allclose(d[30:, 2], flat[30:, 2])  # the road keeps the flat-ground depth
    assert (d[:5] == d.max()).all()  # sky is farthest
