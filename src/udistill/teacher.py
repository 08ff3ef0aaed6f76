"""Moved to :mod:`udistill.pipeline.teacher`; kept because issue #14 names `teacher.train_on_labels`."""

from .pipeline.teacher import data_meta, parse_members, train_member, train_members, train_on_labels

__all__ = ["data_meta", "parse_members", "train_member", "train_members", "train_on_labels"]
