"""Old name of :mod:`udistill.data.files` (the base class of the on-disk data sets), kept for
one release so that code importing ``udistill.data.folder`` still works. Import from
``udistill.data.files`` instead."""

from .files import (  # noqa: F401
    IMAGE_SUFFIXES,
    FileDataset,
    Sample,
    apply_lut,
    as_list,
    check_shift,
    files_digest,
    find_images,
    lut_from_table,
    paired_sample,
    resolve_root,
    shift_seed,
    target_scheme,
)

item_seed = shift_seed  # its old name
