"""Execution: a survey's fits run as Ray Tune trials (alone, packed or data-parallel), driven
by ``survey run`` or submitted to a cluster; results go to ``pipelines.results``.
"""
