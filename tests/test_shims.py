"""The old import paths that earlier issues name still work: each shim re-exports the very
objects of the modules' new homes (a shim with copies would let the two drift apart)."""

from __future__ import annotations

import importlib
import re

import pytest

SHIMS = ("benchmark", "calibration", "distill", "ensemble", "evaluate", "losses", "planning", "provenance", "teacher")


@pytest.mark.parametrize("name", SHIMS)
def test_shim_reexports_the_new_objects(name):
    shim = importlib.import_module(f"udistill.{name}")
    new_home, issue = re.match(r"Moved to :mod:`([\w.]+)`; kept because issue #(\d+) names", shim.__doc__).groups()
    assert int(issue) in range(1, 24)
    new = importlib.import_module(new_home)
    assert shim.__all__
    for attr in shim.__all__:
        obj = getattr(shim, attr)
        assert getattr(new, attr, obj) is obj, f"udistill.{name}.{attr} is not {new_home}.{attr}"


def test_the_names_issues_call_through_the_old_paths():
    from udistill.core import distillation_loss
    from udistill.core.ensemble import Ensemble
    from udistill.core.heads import init_sigma_bias, uncertainty_output_layer
    from udistill.core.teachers import teacher_targets
    from udistill.distill import init_sigma_bias as old_init
    from udistill.distill import teacher_targets as old_targets
    from udistill.distill import uncertainty_output_layer as old_layer
    from udistill.ensemble import Ensemble as OldEnsemble
    from udistill.losses import distillation_loss as old_loss

    assert (old_loss, OldEnsemble, old_init, old_targets, old_layer) == (
        distillation_loss,
        Ensemble,
        init_sigma_bias,
        teacher_targets,
        uncertainty_output_layer,
    )
