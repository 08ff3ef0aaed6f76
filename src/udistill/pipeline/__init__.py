"""The run-folder pipeline: each stage (members, student, control, targets cache) built from
a config into ``<out_dir>``, with planning, locks, validation and the demo driver.

One user of :mod:`udistill.core` among others; nothing below it imports it (see
docs/architecture.md)."""
