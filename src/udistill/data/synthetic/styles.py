"""What a "city" looks like: layout statistics, palettes, camera and light.

A :class:`Style` is a table of ranges and palettes the layout draws from. Four ship:
:data:`CAMVID_STYLE` (the training distribution), :data:`NEW_CITY_STYLE` (the ``new-city``
shift: same classes, other looks, playing the role A2D2 plays in the paper), and two that
are only ever auxiliary distillation data (:data:`HARBOUR_STYLE`, :data:`SUBURB_STYLE`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    """Parameters of one "city": layout statistics, palettes, camera and light."""

    name: str
    horizon: tuple[float, float] = (0.40, 0.50)  # horizon row / H
    focal: tuple[float, float] = (0.80, 1.00)  # focal length / W
    cam_height: tuple[float, float] = (1.25, 1.6)  # metres
    yaw: float = 0.06  # vanishing-point offset, fraction of W
    lanes: tuple[int, ...] = (2, 2, 3, 4)
    lane_width: tuple[float, float] = (3.0, 3.6)
    pave_width: tuple[float, float] = (1.8, 4.5)
    building_height: tuple[float, float] = (6.0, 22.0)
    segment_length: tuple[float, float] = (7.0, 30.0)
    gap_prob: float = 0.18
    setback: tuple[float, float] = (0.0, 1.2)
    street_end: tuple[float, float] = (70.0, 220.0)
    end_block_prob: float = 0.6
    windows_prob: float = 0.85
    shop_prob: float = 0.35
    floor_height: tuple[float, float] = (2.8, 3.6)
    tree_row_prob: float = 0.45
    hedge_prob: float = 0.25
    fence_prob: float = 0.55
    railing_prob: float = 0.3
    parked_prob: float = 0.45
    pavers_prob: float = 0.0
    crossing_prob: float = 0.25
    edge_line_prob: float = 0.6
    n_cars: float = 2.0
    n_peds: float = 4.0
    n_bikes: float = 1.2
    n_signs: float = 3.0
    traffic_light_prob: float = 0.35
    lamp_spacing: tuple[float, float] = (18.0, 34.0)
    sunny_prob: float = 0.35
    exposure: tuple[float, float] = (0.85, 1.12)
    tint: float = 0.04
    road: tuple = ((0.42, 0.41, 0.43), (0.38, 0.37, 0.38), (0.46, 0.45, 0.44))
    pavement: tuple = ((0.50, 0.49, 0.47), (0.46, 0.45, 0.44), (0.56, 0.50, 0.46), (0.55, 0.55, 0.53))
    kerb: tuple = ((0.6, 0.6, 0.58), (0.5, 0.5, 0.49))
    marking: tuple = ((0.82, 0.82, 0.78), (0.75, 0.75, 0.70), (0.80, 0.72, 0.35))
    building: tuple = (
        (0.55, 0.52, 0.48),
        (0.62, 0.58, 0.50),
        (0.50, 0.32, 0.27),
        (0.72, 0.70, 0.66),
        (0.46, 0.46, 0.47),
        (0.60, 0.50, 0.38),
        (0.38, 0.36, 0.35),
        (0.66, 0.62, 0.58),
    )
    window: tuple = ((0.16, 0.18, 0.22), (0.28, 0.30, 0.34), (0.50, 0.56, 0.62), (0.12, 0.12, 0.13))
    sky_horizon: tuple = ((0.86, 0.88, 0.90), (0.80, 0.84, 0.90), (0.92, 0.92, 0.91), (0.74, 0.80, 0.88))
    sky_zenith: tuple = ((0.72, 0.77, 0.85), (0.55, 0.66, 0.85), (0.80, 0.81, 0.83))
    tree: tuple = ((0.20, 0.27, 0.12), (0.26, 0.32, 0.17), (0.30, 0.34, 0.19), (0.17, 0.21, 0.14), (0.33, 0.38, 0.16))
    trunk: tuple = ((0.27, 0.23, 0.19), (0.33, 0.31, 0.28))
    fence: tuple = ((0.20, 0.22, 0.20), (0.14, 0.15, 0.15), (0.36, 0.29, 0.21), (0.42, 0.42, 0.42), (0.19, 0.25, 0.17))
    pole: tuple = ((0.36, 0.36, 0.36), (0.20, 0.22, 0.21), (0.50, 0.50, 0.48), (0.17, 0.24, 0.19))
    sign_front: tuple = (
        (0.75, 0.13, 0.12),
        (0.13, 0.27, 0.65),
        (0.86, 0.86, 0.84),
        (0.86, 0.70, 0.12),
        (0.10, 0.42, 0.25),
    )
    sign_back: tuple = ((0.52, 0.52, 0.52), (0.40, 0.40, 0.41))
    car: tuple = (
        (0.85, 0.85, 0.84),
        (0.66, 0.67, 0.68),
        (0.44, 0.45, 0.46),
        (0.12, 0.12, 0.13),
        (0.58, 0.10, 0.10),
        (0.16, 0.23, 0.45),
        (0.18, 0.30, 0.20),
        (0.66, 0.60, 0.48),
        (0.30, 0.30, 0.34),
    )
    clothing: tuple = (
        (0.12, 0.12, 0.14),
        (0.22, 0.24, 0.30),
        (0.20, 0.26, 0.42),
        (0.55, 0.48, 0.38),
        (0.60, 0.15, 0.15),
        (0.30, 0.30, 0.30),
        (0.70, 0.70, 0.68),
        (0.18, 0.30, 0.22),
        (0.45, 0.35, 0.25),
    )
    skin: tuple = ((0.84, 0.66, 0.54), (0.56, 0.39, 0.29), (0.72, 0.53, 0.42), (0.20, 0.16, 0.14))
    texture: float = 1.0  # scale of all texture amplitudes


CAMVID_STYLE = Style(name="camvid")

#: A different city: pastel and glass façades, taller blocks, red pavers, darker fresh
#: asphalt, brighter vegetation, clear skies with hard shadows, a wider lens mounted higher.
NEW_CITY_STYLE = Style(
    name="new-city",
    horizon=(0.48, 0.56),
    focal=(0.60, 0.75),
    cam_height=(1.55, 1.9),
    yaw=0.04,
    lanes=(2, 3, 3, 4),
    lane_width=(3.4, 3.9),
    pave_width=(3.0, 6.0),
    building_height=(12.0, 34.0),
    segment_length=(15.0, 45.0),
    gap_prob=0.08,
    setback=(0.0, 0.6),
    street_end=(120.0, 300.0),
    end_block_prob=0.4,
    windows_prob=0.95,
    shop_prob=0.6,
    floor_height=(3.2, 4.0),
    tree_row_prob=0.65,
    hedge_prob=0.4,
    fence_prob=0.3,
    railing_prob=0.15,
    parked_prob=0.35,
    pavers_prob=0.7,
    crossing_prob=0.4,
    edge_line_prob=0.9,
    n_cars=3.5,
    n_peds=2.5,
    n_bikes=1.5,
    n_signs=3.0,
    traffic_light_prob=0.5,
    lamp_spacing=(25.0, 40.0),
    sunny_prob=0.8,
    exposure=(0.95, 1.2),
    tint=0.03,
    road=((0.29, 0.29, 0.31), (0.33, 0.33, 0.35), (0.26, 0.27, 0.29)),
    pavement=((0.62, 0.44, 0.38), (0.66, 0.60, 0.52), (0.55, 0.40, 0.36), (0.70, 0.68, 0.64)),
    kerb=((0.78, 0.77, 0.74),),
    marking=((0.95, 0.95, 0.93),),
    building=(
        (0.88, 0.80, 0.56),
        (0.86, 0.63, 0.52),
        (0.66, 0.72, 0.77),
        (0.90, 0.88, 0.83),
        (0.77, 0.62, 0.36),
        (0.36, 0.46, 0.56),
        (0.80, 0.76, 0.70),
        (0.70, 0.50, 0.46),
    ),
    window=((0.20, 0.30, 0.40), (0.40, 0.55, 0.68), (0.10, 0.16, 0.22)),
    sky_horizon=((0.72, 0.82, 0.93), (0.78, 0.85, 0.94), (0.66, 0.78, 0.92)),
    sky_zenith=((0.35, 0.55, 0.88), (0.42, 0.60, 0.90), (0.30, 0.48, 0.82)),
    tree=((0.30, 0.46, 0.15), (0.38, 0.52, 0.20), (0.24, 0.38, 0.12), (0.42, 0.50, 0.22)),
    trunk=((0.38, 0.32, 0.26),),
    fence=((0.55, 0.55, 0.55), (0.25, 0.28, 0.32), (0.60, 0.45, 0.30)),
    pole=((0.55, 0.56, 0.58), (0.30, 0.32, 0.35), (0.62, 0.62, 0.60)),
    sign_front=((0.80, 0.10, 0.12), (0.10, 0.30, 0.72), (0.92, 0.92, 0.90), (0.92, 0.78, 0.10)),
    sign_back=((0.62, 0.63, 0.64),),
    car=(
        (0.10, 0.10, 0.12),
        (0.70, 0.71, 0.73),
        (0.20, 0.26, 0.45),
        (0.90, 0.90, 0.90),
        (0.38, 0.39, 0.41),
        (0.55, 0.58, 0.62),
        (0.65, 0.15, 0.12),
    ),
    clothing=(
        (0.10, 0.10, 0.12),
        (0.80, 0.78, 0.72),
        (0.25, 0.35, 0.60),
        (0.70, 0.55, 0.30),
        (0.45, 0.20, 0.40),
        (0.35, 0.40, 0.30),
        (0.85, 0.40, 0.20),
    ),
    texture=1.3,
)

#: Auxiliary styles (distillation only, :mod:`udistill.data.auxiliary`): two more cities
#: that no evaluation shift uses. ``harbour``: an industrial waterfront, low long sheds in
#: rust, teal and concrete, few windows, wide empty roads, a low camera on a truck-like
#: lens, hazy warm light. ``suburb``: low houses set back behind hedges and trees, narrow
#: roads without markings, saturated greens and brick, a high wide-angle camera.
HARBOUR_STYLE = Style(
    name="harbour",
    horizon=(0.36, 0.44),
    focal=(0.95, 1.15),
    cam_height=(1.9, 2.4),
    lanes=(3, 4, 4),
    lane_width=(3.5, 4.2),
    pave_width=(1.0, 2.5),
    building_height=(4.0, 10.0),
    segment_length=(25.0, 60.0),
    gap_prob=0.3,
    setback=(1.0, 4.0),
    windows_prob=0.3,
    shop_prob=0.05,
    tree_row_prob=0.1,
    hedge_prob=0.05,
    fence_prob=0.8,
    railing_prob=0.5,
    parked_prob=0.6,
    crossing_prob=0.05,
    edge_line_prob=0.3,
    n_cars=1.5,
    n_peds=1.0,
    n_bikes=0.4,
    sunny_prob=0.2,
    exposure=(0.9, 1.05),
    tint=0.08,
    road=((0.48, 0.46, 0.42), (0.52, 0.50, 0.47)),
    pavement=((0.58, 0.57, 0.54),),
    building=((0.55, 0.28, 0.18), (0.20, 0.45, 0.48), (0.70, 0.70, 0.68), (0.45, 0.47, 0.50), (0.62, 0.55, 0.30)),
    sky_horizon=((0.88, 0.84, 0.76), (0.84, 0.82, 0.78)),
    sky_zenith=((0.70, 0.72, 0.74), (0.62, 0.66, 0.72)),
    car=((0.85, 0.55, 0.10), (0.15, 0.35, 0.60), (0.75, 0.75, 0.72), (0.25, 0.25, 0.27)),
    texture=0.7,
)
SUBURB_STYLE = Style(
    name="suburb",
    horizon=(0.44, 0.54),
    focal=(0.55, 0.7),
    cam_height=(1.5, 1.8),
    lanes=(2, 2),
    lane_width=(2.8, 3.2),
    pave_width=(2.5, 5.0),
    building_height=(4.0, 9.0),
    segment_length=(8.0, 16.0),
    gap_prob=0.45,
    setback=(3.0, 8.0),
    street_end=(60.0, 140.0),
    windows_prob=0.9,
    shop_prob=0.0,
    tree_row_prob=0.85,
    hedge_prob=0.75,
    fence_prob=0.6,
    parked_prob=0.5,
    crossing_prob=0.0,
    edge_line_prob=0.0,
    n_cars=1.0,
    n_peds=1.5,
    n_bikes=0.8,
    traffic_light_prob=0.0,
    sunny_prob=0.6,
    road=((0.36, 0.36, 0.36), (0.40, 0.39, 0.37)),
    pavement=((0.66, 0.64, 0.60), (0.60, 0.58, 0.52)),
    building=((0.66, 0.30, 0.22), (0.92, 0.90, 0.84), (0.80, 0.72, 0.55), (0.55, 0.60, 0.50), (0.72, 0.40, 0.30)),
    tree=((0.18, 0.42, 0.10), (0.26, 0.50, 0.14), (0.32, 0.45, 0.12)),
    texture=1.1,
)

STYLES = {"camvid": CAMVID_STYLE, "new-city": NEW_CITY_STYLE, "harbour": HARBOUR_STYLE, "suburb": SUBURB_STYLE}
